//! Link lrlab's binaries, tests and benches against libtorch so that they run without
//! `LD_LIBRARY_PATH` and keep CUDA: torch-sys' own link flags only reach its own targets,
//! and rustc's `--as-needed` would drop `libtorch.so` (and with it `libtorch_cuda.so`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB not set: torch-sys must be a direct dependency in Cargo.toml",
    ));
    // LIBTORCH may be the checkout's `.libtorch` link (.cargo/config.toml): the rpath names
    // what it points to, so the binary keeps working from a copy or another folder.
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    // A pip `site-packages/torch` passed as LIBTORCH skips torch-sys' version check, and a
    // libtorch of another release fails deep in the C++ build: say early which one is needed.
    let (tch, torch) = torch_release_for_tch();
    if let Some(root) = lib.parent() {
        if let Ok(v) = std::fs::read_to_string(root.join("version.py")) {
            if let Some(line) = v.lines().find(|l| l.starts_with("__version__")) {
                let version = line.split('\'').nth(1).unwrap_or("");
                println!("cargo:rustc-env=LRLAB_LIBTORCH_VERSION={version}");
                if !version.starts_with(&format!("{torch}.")) {
                    panic!(
                        "lrlab built with tch {tch} needs torch {torch}.x, found {version} in {} \
                         (`make bundle TORCH=...` builds for another release)",
                        root.display()
                    );
                }
            }
        }
    }
    git_commit();
    shim(&lib);
    dist_shim(&lib);
    println!("cargo:rerun-if-env-changed=LRLAB_NO_RPATH");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // A bundle (`make bundle`) finds libtorch through its launcher instead, and carries
        // no path of the machine it was built on.
        if std::env::var_os("LRLAB_NO_RPATH").is_none() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}

/// The tch release this manifest pins and the torch release (major.minor) it is built for:
/// tch's own table (its README); `make bundle` pins another tch in a copy of the manifest.
fn torch_release_for_tch() -> (String, &'static str) {
    let manifest = std::fs::read_to_string("Cargo.toml").expect("Cargo.toml beside build.rs");
    let tch = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("tch = \"="))
        .and_then(|l| l.split('"').next())
        .expect("Cargo.toml pins tch as tch = \"=X.Y.Z\"")
        .to_string();
    let torch = match tch
        .rsplit_once('.')
        .map_or(tch.as_str(), |(minor, _)| minor)
    {
        "0.23" => "2.10",
        "0.24" => "2.11",
        "0.26" => "2.13",
        other => panic!("no torch release known for tch {other} (known: 0.23, 0.24, 0.26)"),
    };
    (tch, torch)
}

/// Record the commit the binary was built from (for `meta.json`), when built from a git
/// checkout (or given as LRLAB_GIT_COMMIT, for a bundle built from a copy of the sources).
/// Only existing paths are watched: a missing one would rerun this script always.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=LRLAB_GIT_COMMIT");
    if let Ok(commit) = std::env::var("LRLAB_GIT_COMMIT") {
        println!("cargo:rustc-env=LRLAB_GIT_COMMIT={commit}");
        return;
    }
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output();
    if let Ok(out) = out {
        if out.status.success() {
            let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("cargo:rustc-env=LRLAB_GIT_COMMIT={commit}");
        }
    }
}

/// Compile `src/shim/switches.cpp` (autocast dtype, determinism switches) against libtorch's
/// headers.
fn shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/shim/switches.cpp");
    println!("cargo:rerun-if-changed=src/shim/guard.h");
    torch_cpp(lib, "src/shim/switches.cpp").compile("lrlab_shim");
}

/// A C++17 build of `file` against libtorch's headers, with libtorch's C++ ABI.
fn torch_cpp(lib: &std::path::Path, file: &str) -> cc::Build {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let root = lib.parent().expect("libtorch lib dir has a parent");
    let inc = std::env::var("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.to_path_buf())
        .join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    let mut b = cc::Build::new();
    b.cpp(true)
        .file(file)
        .include(&inc)
        .include(inc.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false);
    b
}

/// Compile `src/shim/c10d.cpp` (c10d: TCPStore, ProcessGroupGloo) against libtorch's headers.
/// Gloo's own code is inside `libtorch_cpu.so`; its headers come from Debian's `libgloo-dev`
/// (`make setup` installs it). Without them the shim is built without Gloo and
/// `lrlab train --nproc N` says what to install.
fn dist_shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/shim/c10d.cpp");
    println!("cargo:rerun-if-env-changed=LRLAB_GLOO_INCLUDE");
    let gloo = std::env::var("LRLAB_GLOO_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/include"));
    println!("cargo:rerun-if-changed={}", gloo.join("gloo").display());
    let mut b = torch_cpp(lib, "src/shim/c10d.cpp");
    if gloo.join("gloo/config.h").exists() {
        b.include(&gloo)
            .define("USE_C10D_GLOO", None)
            .define("LRLAB_GLOO", None);
    } else {
        println!(
            "cargo:warning=gloo headers not found under {} (Debian: libgloo-dev; `make setup` \
             installs it): lrlab is built without multi-process training",
            gloo.display()
        );
    }
    b.compile("lrlab_dist_shim");
}
