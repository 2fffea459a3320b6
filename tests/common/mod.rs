//! Shared pieces of the integration tests: a tiny synthetic base run, files, the binary, CSVs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A run of about a second: LeNet on 512 synthetic 28x28 images, 2 epochs of 8 steps.
pub const BASE: &str = r#"
[data]
dataset = "synthetic"
shape = [1, 28, 28]
size = 512
test_size = 128

[model]
arch = "lenet"

[train]
epochs = 2
batch_size = 64
threads = 1

[schedule]
kind = "constant"
lr = 0.01
"#;

/// Write `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// The lrlab binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lrlab")
}

/// A command for the lrlab binary, to add arguments to.
pub fn cmd() -> Command {
    Command::new(bin())
}

/// Assert that lrlab succeeded, with its stderr in the message.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "lrlab failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CSV file's text without its time columns (`time_s`, `images_per_sec`): they differ
/// between runs by nature; everything else must be equal after an interruption and resume.
pub fn without_time(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != "time_s" && header[i] != "images_per_sec")
        .collect();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| f[i]).collect::<Vec<_>>().join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Seconds a test waits for a command it starts before killing it and failing: no test run
/// comes near it on 2 loaded cores, and a hang fails instead of eating the suite.
pub const DEADLINE_S: u64 = 300;

/// `Command::output` with a deadline: stdin closed, stdout and stderr captured, the child
/// killed and the test failed (naming the command) after `secs` seconds.
pub trait OutputWithin {
    fn output_within(&mut self, secs: u64) -> std::io::Result<Output>;
}

impl OutputWithin for Command {
    fn output_within(&mut self, secs: u64) -> std::io::Result<Output> {
        use std::io::{Read, Seek};
        let (mut out, mut err) = (tempfile::tempfile()?, tempfile::tempfile()?);
        let what = format!("{self:?}");
        let mut child = self
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(err.try_clone()?)
            .spawn()?;
        let status = wait_exit(&mut child, secs, &what);
        let read = |f: &mut std::fs::File| -> std::io::Result<Vec<u8>> {
            let mut v = Vec::new();
            f.rewind()?;
            f.read_to_end(&mut v)?;
            Ok(v)
        };
        Ok(Output {
            status,
            stdout: read(&mut out)?,
            stderr: read(&mut err)?,
        })
    }
}

/// Run lrlab with `args` and wait (at most [`DEADLINE_S`]).
pub fn lrlab(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output_within(DEADLINE_S)
        .expect("run lrlab")
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// stdout and stderr of an output, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A CSV file as (header, rows).
pub fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The value of column `name` in `row`.
pub fn field<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    &row[i]
}

/// The JSON lines of a run's `attempts.jsonl`.
pub fn attempts(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("attempts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `status` of a run's status.json.
pub fn status(run: &Path) -> String {
    lrlab::run::Status::read(run)
        .map(|s| s.status.name().to_string())
        .unwrap_or_default()
}

/// `meta.json` of a run.
pub fn meta(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap()
}

/// epochs.csv without the timing columns (time_s, images_per_sec): what must not change
/// when a run is interrupted and resumed.
pub fn curve(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("epochs.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[..f.len() - 2].join(",")
        })
        .collect()
}

/// Poll `cond` every 50 ms for at most `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        if t.elapsed().as_secs() >= secs {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// True once process `pid` catches `sig` (its handler is installed): read from the SigCgt
/// mask of /proc/PID/status. A test that signals a child waits for this first, so that the
/// signal meets the handler and not the default action.
pub fn catches(pid: u32, sig: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig - 1)) != 0)
}

/// Wait for `child` to exit, killing it and failing after `secs` seconds.
pub fn wait_exit(
    child: &mut std::process::Child,
    secs: u64,
    what: &str,
) -> std::process::ExitStatus {
    let t = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed().as_secs() >= secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
