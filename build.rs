//! Link lrlab's binaries, tests and benches against libtorch so that they run without
//! `LD_LIBRARY_PATH` and keep CUDA: torch-sys' own link flags only reach its own targets,
//! and rustc's `--as-needed` would drop `libtorch.so` (and with it `libtorch_cuda.so`).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let lib = PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "DEP_TCH_LIBTORCH_LIB not set: torch-sys must be a direct dependency in Cargo.toml",
    ));
    // LIBTORCH may be the checkout's `.libtorch` link (.cargo/config.toml): the rpath names
    // what it points to, so the binary keeps working from a copy or another folder.
    let lib = std::fs::canonicalize(&lib).unwrap_or(lib);
    // A pip `site-packages/torch` passed as LIBTORCH skips torch-sys' version check, and
    // torch 2.14 headers need C++20: fail early with a readable message instead.
    if let Some(root) = lib.parent() {
        if let Ok(v) = std::fs::read_to_string(root.join("version.py")) {
            if let Some(line) = v.lines().find(|l| l.starts_with("__version__")) {
                let version = line.split('\'').nth(1).unwrap_or("");
                println!("cargo:rustc-env=LRLAB_LIBTORCH_VERSION={version}");
                if !line.contains("'2.13.") {
                    panic!(
                        "lrlab needs torch 2.13.x (tch 0.26), found {line} in {}",
                        root.display()
                    );
                }
            }
        }
    }
    git_commit();
    shim(&lib);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}

/// Record the commit the binary was built from (for `meta.json`), when built from a git
/// checkout. Only existing paths are watched: a missing one would rerun this script always.
fn git_commit() {
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

/// Compile `src/shim.cpp` (autocast dtype, determinism switches) against libtorch's headers.
fn shim(lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let root = lib.parent().expect("libtorch lib dir has a parent");
    let inc = std::env::var("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.to_path_buf())
        .join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_string());
    cc::Build::new()
        .cpp(true)
        .file("src/shim.cpp")
        .include(&inc)
        .include(inc.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("lrlab_shim");
}
