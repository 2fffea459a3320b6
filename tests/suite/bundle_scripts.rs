//! The scripts of `make bundle` and `make gpu-bundle`. The launcher (scripts/bundle-launcher.sh)
//! finds the installed PyTorch's libtorch, refuses another release with exit 2 and a message
//! naming both, and runs the bundled binary with that libtorch on the library path and the
//! arguments intact (the binary and the PyTorch installs are stand-ins written by the test).
//! The GPU check's run.sh, where there is no GPU, runs its CPU steps and exits with 77.

use crate::common;
use common::OutputWithin;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A bundle for torch `built_for` in `dir`: the launcher, and a stand-in binary that prints
/// its library path and arguments.
fn bundle(dir: &Path, built_for: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bundle-launcher.sh");
    let text = std::fs::read_to_string(src).unwrap();
    std::fs::create_dir_all(dir.join("libexec")).unwrap();
    let launcher = dir.join("lrlab");
    std::fs::write(&launcher, text.replace("@TORCH@", built_for)).unwrap();
    let bin = dir.join("libexec/lrlab");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho \"path=$LD_LIBRARY_PATH\"\nfor a in \"$@\"; do echo \"arg=$a\"; done\n",
    )
    .unwrap();
    for p in [&launcher, &bin] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    launcher
}

/// A PyTorch install (site-packages/torch) of `version` with an empty libtorch.so.
fn torch_install(dir: &Path, version: &str) -> PathBuf {
    let torch = dir.join("site-packages/torch");
    std::fs::create_dir_all(torch.join("lib")).unwrap();
    std::fs::write(torch.join("lib/libtorch.so"), "").unwrap();
    std::fs::write(
        torch.join("version.py"),
        format!("from typing import Optional\n__version__ = '{version}'\ncuda = '13.0'\n"),
    )
    .unwrap();
    torch.join("lib")
}

fn run(launcher: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(launcher);
    c.args(args)
        .env_remove("LRLAB_TORCH_LIB")
        .env_remove("LRLAB_PYTHON")
        .env("LD_LIBRARY_PATH", "/existing");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output_within(common::DEADLINE_S)
        .expect("run the launcher")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_matching_release_runs_the_binary_with_its_libtorch_first_on_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = bundle(&tmp.path().join("dist"), "2.11.0");
    // A later patch release and a local build suffix are the same release.
    let lib = torch_install(tmp.path(), "2.11.1+cu130");
    let o = run(
        &launcher,
        &[("LRLAB_TORCH_LIB", lib.to_str().unwrap())],
        &["train", "a b.toml", "--set", "x=1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "path={}:/existing\narg=train\narg=a b.toml\narg=--set\narg=x=1\n",
            lib.display()
        )
    );
}

#[test]
fn the_torch_package_of_python_is_found_without_a_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = bundle(&tmp.path().join("dist"), "2.13.0");
    let lib = torch_install(tmp.path(), "2.13.0");
    // A stand-in interpreter that answers the launcher's question as python3 would.
    let py = tmp.path().join("python3");
    std::fs::write(&py, format!("#!/bin/sh\necho {}\n", lib.display())).unwrap();
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = run(
        &launcher,
        &[("LRLAB_PYTHON", py.to_str().unwrap())],
        &["info"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("path={}:", lib.display())));
}

#[test]
fn another_release_is_refused_naming_both_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = bundle(&tmp.path().join("dist"), "2.11.0");
    let lib = torch_install(tmp.path(), "2.13.0+cu130");
    let o = run(
        &launcher,
        &[("LRLAB_TORCH_LIB", lib.to_str().unwrap())],
        &["info"],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("this build is for torch 2.11.0")
            && e.contains("torch 2.13.0+cu130")
            && e.contains(lib.to_str().unwrap()),
        "{e}"
    );
    assert!(o.stdout.is_empty(), "the binary must not run");
}

#[test]
fn no_pytorch_or_no_libtorch_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let launcher = bundle(&tmp.path().join("dist"), "2.11.0");
    let o = run(&launcher, &[("LRLAB_PYTHON", "/bin/false")], &["info"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no PyTorch found"), "{}", stderr(&o));

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(
        &launcher,
        &[("LRLAB_TORCH_LIB", empty.to_str().unwrap())],
        &["info"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds no libtorch.so"),
        "{}",
        stderr(&o)
    );

    // A libtorch that does not say its release.
    let lib = torch_install(tmp.path(), "2.11.0");
    std::fs::remove_file(lib.parent().unwrap().join("version.py")).unwrap();
    let o = run(
        &launcher,
        &[("LRLAB_TORCH_LIB", lib.to_str().unwrap())],
        &["info"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot tell the release"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_gpu_check_says_there_is_no_gpu_with_its_own_exit_status() {
    if tch::Cuda::is_available() {
        eprintln!("a CUDA device is present: the no-GPU path of run.sh is not what runs here");
        return;
    }
    // dist/gpu-check as `make gpu-bundle` lays it out, with this build's binary as the bundle.
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = tmp.path().join("gpu-check");
    std::fs::create_dir_all(check.join("lrlab")).unwrap();
    std::fs::copy(root.join("scripts/gpu-check-run.sh"), check.join("run.sh")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_lrlab"), check.join("lrlab/lrlab")).unwrap();
    let results = tmp.path().join("results");
    let o = Command::new(check.join("run.sh"))
        .arg(&results)
        .env("LRLAB_TORCH_LIB", "/nonexistent")
        .output_within(common::DEADLINE_S)
        .unwrap();
    let (stdout, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(77), "{stdout}\n{err}");
    assert!(err.contains("no CUDA device on this machine"), "{err}");
    // The CPU steps ran (the training's CSVs are there); the GPU steps are listed as skipped.
    assert!(results.join("cpu/epochs.csv").exists());
    let table = std::fs::read_to_string(results.join("summary.md")).unwrap();
    assert_eq!(stdout, table, "the table printed is the one written");
    assert!(
        table.contains("| info | ok |") && table.contains("| cpu | ok |"),
        "{table}"
    );
    for step in ["train", "resume", "sweep", "speed", "tests"] {
        assert!(
            table.contains(&format!("| {step} | skipped | - | no CUDA device |")),
            "{table}"
        );
    }
}
