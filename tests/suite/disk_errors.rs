//! A full disk and a read-only output folder, on small tmpfs mounts: lrlab stops with an
//! error that names the file or folder and the OS's reason, leaves no temporary file or torn
//! CSV row, keeps the previous checkpoint loadable (the run resumes once space is freed), and
//! writes nothing on a read-only folder.
//!
//! Mounting needs root (CAP_SYS_ADMIN); where `mount` is not permitted each test prints why
//! and returns without failing. Every mount is undone by a guard, also when a test fails.

use crate::common;
use common as fx;
use common::OutputWithin;

use fx::{bin, s, status, text, without_time, write};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Three epochs of four steps of LeNet on 16x16 synthetic images; a checkpoint is ~450 KB.
const RUN: &str = r#"
[data]
dataset = "synthetic"
shape = [1, 16, 16]
size = 256
test_size = 64

[model]
arch = "lenet"

[train]
epochs = 3
batch_size = 64
threads = 1

[schedule]
kind = "constant"
lr = 0.01
"#;

/// A tmpfs mounted for a test, unmounted (lazily) when dropped.
struct Mount(PathBuf);

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

impl Mount {
    /// Mount a tmpfs of `bytes` at `path` (created); `Err` says why it cannot be done.
    fn tmpfs(path: &Path, bytes: u64) -> Result<Mount, String> {
        std::fs::create_dir_all(path).unwrap();
        let (src, target, data) = (cstr("tmpfs"), cstr(s(path)), cstr(&format!("size={bytes}")));
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                data.as_ptr() as *const libc::c_void,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(Mount(path.to_path_buf()))
    }

    /// Remount with `flags` (besides MS_REMOUNT) and tmpfs options `data`.
    fn remount(&self, flags: libc::c_ulong, data: &str) {
        let (src, target, data) = (cstr("tmpfs"), cstr(s(&self.0)), cstr(data));
        // SAFETY: as in `tmpfs`.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                libc::MS_REMOUNT | flags,
                data.as_ptr() as *const libc::c_void,
            )
        };
        assert_eq!(rc, 0, "remount: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = cstr(s(&self.0));
        // SAFETY: a valid path; MNT_DETACH also succeeds while a file there is still open.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Mount a tmpfs, or say why not (then the calling test returns).
fn mount_or_skip(path: &Path, bytes: u64) -> Option<Mount> {
    match Mount::tmpfs(path, bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("note: cannot mount a tmpfs here ({e}); skipping");
            None
        }
    }
}

fn train(cfg: &Path, out: &Path) -> Output {
    Command::new(bin())
        .args(["train", s(cfg), "--out", s(out), "--quiet"])
        .output_within(common::DEADLINE_S)
        .unwrap()
}

fn sweep(spec: &Path, out: &Path) -> Output {
    Command::new(bin())
        .args(["sweep", s(spec), "--out", s(out), "--devices", "cpu"])
        .output_within(common::DEADLINE_S)
        .unwrap()
}

/// Every row of a CSV is complete: a final newline and the header's number of fields.
fn whole_rows(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "{}: torn last row", path.display());
    let n = text.lines().next().unwrap().split(',').count();
    for l in text.lines() {
        assert_eq!(
            l.split(',').count(),
            n,
            "{}: torn row {l:?}",
            path.display()
        );
    }
}

/// Names of the entries of `dir` (recursively), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path().display().to_string());
        if e.path().is_dir() {
            out.extend(listing(&e.path()));
        }
    }
    out.sort();
    out
}

fn no_temporaries(dir: &Path) {
    for p in listing(dir) {
        let name = Path::new(&p)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.starts_with(".lrlab-tmp-") && !name.ends_with(".tmp"),
            "temporary file left: {p}"
        );
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_checkpoint_that_does_not_fit_fails_cleanly_and_the_previous_one_resumes() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(t.path(), "run.toml", RUN);
    let reference = t.path().join("reference");
    let o = train(&cfg, &reference);
    assert!(o.status.success(), "{}", text(&o));
    let ck = std::fs::metadata(reference.join("checkpoint.safetensors"))
        .unwrap()
        .len();
    // Room for one checkpoint and the small files, not for a second checkpoint beside it:
    // the first epoch's checkpoint is written, the second epoch's cannot be.
    let size = (ck * 3 / 2 + 64 * 1024).div_ceil(4096) * 4096;
    let mnt = t.path().join("mnt");
    let Some(m) = mount_or_skip(&mnt, size) else {
        return;
    };
    let out = mnt.join("run");
    let o = train(&cfg, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let file = out.join("checkpoint.safetensors");
    assert!(
        err.contains(&format!("cannot write {}", file.display()))
            && err.contains("No space left on device"),
        "the error should name {} and the OS's reason: {err}",
        file.display()
    );
    let st = lrlab::run::Status::read(&out).unwrap();
    assert_eq!(st.status, lrlab::run::State::Failed);
    assert!(st.reason.contains("No space left on device"), "{st:?}");
    no_temporaries(&mnt);
    whole_rows(&out.join("steps.csv"));
    whole_rows(&out.join("epochs.csv"));

    // Space freed: the same command resumes from the first epoch's checkpoint.
    m.remount(0, &format!("size={}", 16 << 20));
    let o = train(&cfg, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(&out), "done");
    let meta = fx::meta(&out);
    assert_eq!(meta["resumed_from_step"], 4, "{meta}");
    assert_eq!(meta["completions"], 1, "{meta}");
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            without_time(&out.join(f)),
            without_time(&reference.join(f)),
            "{f}"
        );
    }
    no_temporaries(&mnt);
}

#[test]
fn a_sweep_on_a_full_disk_says_so() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "base.toml", RUN);
    let spec = write(
        t.path(),
        "spec.toml",
        "base = \"base.toml\"\nseeds = [0, 1]\n",
    );
    let mnt = t.path().join("mnt");
    let Some(_m) = mount_or_skip(&mnt, 64 * 1024) else {
        return;
    };
    // Fill it up.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    drop(f);
    let out = mnt.join("sweep");
    let o = sweep(&spec, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        err.contains(&format!("cannot write {}", out.display()))
            && err.contains("No space left on device"),
        "{err}"
    );
    no_temporaries(&mnt);
}

#[test]
fn a_read_only_output_folder_is_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let cfg = write(t.path(), "run.toml", RUN);
    let spec = write(t.path(), "spec.toml", "base = \"run.toml\"\nseeds = [0]\n");
    let mnt = t.path().join("ro");
    let Some(m) = mount_or_skip(&mnt, 1 << 20) else {
        return;
    };
    m.remount(libc::MS_RDONLY, "");
    let cases: Vec<(Output, PathBuf)> = vec![
        // A new run folder inside the read-only one, the read-only folder itself, a sweep.
        (train(&cfg, &mnt.join("run")), mnt.join("run")),
        (train(&cfg, &mnt), mnt.clone()),
        (sweep(&spec, &mnt.join("sweep")), mnt.join("sweep")),
    ];
    for (o, folder) in &cases {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(1), "{}", text(o));
        assert!(
            err.contains(&folder.display().to_string()) && err.contains("Read-only file system"),
            "the error should name {} and the OS's reason: {err}",
            folder.display()
        );
    }
    assert_eq!(
        listing(&mnt),
        Vec::<String>::new(),
        "written despite read-only"
    );
}

#[test]
fn a_csv_append_that_runs_out_of_space_is_cut_back_to_whole_rows() {
    use lrlab::run::CsvLog;
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("mnt");
    // 3 pages: the 8 KiB row buffer fits once, the second write is cut short by the disk.
    let Some(_m) = mount_or_skip(&mnt, 3 * 4096) else {
        return;
    };
    let path = mnt.join("steps.csv");
    let mut log = CsvLog::open(&path, "step,loss", 0).unwrap();
    // 37-byte rows, so that no buffer boundary falls on a row boundary of the file.
    let row = |k: u64| vec![format!("{k:06}"), format!("{:029}", k * 7)];
    let mut written = 0;
    let err = loop {
        if let Err(e) = log.row(&row(written)) {
            break e;
        }
        written += 1;
        assert!(written < 10_000, "the disk never filled");
    };
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("cannot write {}", path.display()))
            && msg.contains("No space left on device"),
        "the error should name {} and the OS's reason: {msg}",
        path.display()
    );
    // The disk had room for more rows than the file now holds, so the failed write put part
    // of its rows there (a write fills the disk before it fails)...
    let room = 3 * 4096;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.len() + 2 * 37 < room,
        "{} bytes left on a {room}-byte disk",
        text.len()
    );
    // ...and was cut back: the file holds whole rows, the header and then rows 0, 1, ...
    whole_rows(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "step,loss");
    for (k, l) in lines[1..].iter().enumerate() {
        assert_eq!(*l, row(k as u64).join(","));
    }
    assert!(
        lines.len() > 1 && (lines.len() as u64) < written + 1,
        "{} lines, {written} rows appended",
        lines.len()
    );
}
