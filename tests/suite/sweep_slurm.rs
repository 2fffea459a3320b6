//! The Slurm executor: the array scripts (quoting, array lists, MaxArraySize chunks,
//! --only-missing), and a real one-node Slurm started by the test (tests/slurm-local.sh,
//! root and Debian's slurm packages, installed with apt-get when missing): an array finishes,
//! each task sees its own fake GPU, a failing task leaves the others done, and a task
//! preempted with SIGUSR1 requeues itself and resumes to the same curve.

use crate::common;
use common as fx;
use common::OutputWithin;

use fx::{attempts, lrlab, meta, s, status, text, write, BASE};
use lrlab::sweep::manifest::{freeze, Manifest};
use lrlab::sweep::plan;
use lrlab::sweep::slurm::{
    compress, parse_max_array_size, render_script, sbatch_quote, shell_quote, task_runs,
    tasks_to_submit, write_scripts, SlurmOptions,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn options(program: &str) -> SlurmOptions {
    SlurmOptions {
        partition: Some("gpu part".into()),
        gres: Some("gpu:1".into()),
        time: Some("04:00:00".into()),
        cpus_per_task: Some(2),
        mem: None,
        array_parallel: Some(3),
        runs_per_task: 1,
        signal_lead: 90,
        max_array_size: None,
        extra: vec!["--account=o'brien \"lab\"".into()],
        submit: false,
        only_missing: false,
        retry_failed: false,
        program: PathBuf::from(program),
        ranks_per_run: 1,
    }
}

fn seven_runs(dir: &Path, sweep: &Path) -> Manifest {
    write(dir, "base.toml", BASE);
    let spec = write(
        dir,
        "spec.toml",
        "base = \"base.toml\"\nseeds = [0, 1, 2, 3, 4, 5, 6]\n",
    );
    freeze(sweep, &plan::load(&spec).unwrap()).unwrap()
}

#[test]
fn quoting_array_lists_and_limits() {
    assert_eq!(compress(&[3, 7, 12, 13, 14, 15]), "3,7,12-15");
    assert_eq!(compress(&[5, 0, 1, 2, 1]), "0-2,5");
    assert_eq!(compress(&[]), "");
    assert_eq!(sbatch_quote(r#"a "b" c\d"#), r#""a \"b\" c\\d""#);
    assert_eq!(
        parse_max_array_size("Foo = 1\nMaxArraySize            = 4001\nX = 2"),
        Some(4001)
    );
    assert_eq!(task_runs(2, 3, 7), 6..7);
    assert_eq!(task_runs(3, 3, 7), 7..7);
    // The shell reads a quoted value back unchanged.
    for v in ["plain", "with space", "it's", "\"dq\" $HOME `x` \\ *", ""] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(v)))
            .output_within(common::DEADLINE_S)
            .unwrap();
        assert_eq!(String::from_utf8(o.stdout).unwrap(), v);
    }
}

#[test]
fn scripts_are_valid_shell_with_every_value_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sw 'it' \"q\" $x %p");
    let m = seven_runs(dir.path(), &sweep);
    let o = options("/opt/lr lab/bin/lrlab");
    o.validate(&sweep).unwrap();
    let text = render_script(&sweep, &m, &o, "0-6%3", 0, (0, 1));
    let f = write(dir.path(), "check.sh", &text);
    let check = Command::new("bash")
        .arg("-n")
        .arg(&f)
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let sb: Vec<&str> = text.lines().filter(|l| l.starts_with("#SBATCH")).collect();
    let sw = s(&sweep);
    let out = format!("{}/slurm/%A_%a.out", sw.replace('%', "%%"));
    for want in [
        "#SBATCH --array=\"0-6%3\"".to_string(),
        format!("#SBATCH --output={}", sbatch_quote(&out)),
        "#SBATCH --partition=\"gpu part\"".into(),
        "#SBATCH --gres=\"gpu:1\"".into(),
        "#SBATCH --time=\"04:00:00\"".into(),
        "#SBATCH --cpus-per-task=\"2\"".into(),
        "#SBATCH --signal=\"B:USR1@90\"".into(),
        "#SBATCH --requeue".into(),
        "#SBATCH --open-mode=\"append\"".into(),
        "#SBATCH --account=\"o'brien \\\"lab\\\"\"".into(),
    ] {
        assert!(sb.contains(&want.as_str()), "missing {want}\n{text}");
    }
    assert!(text.contains(&format!("sweep={}\n", shell_quote(sw))));
    assert!(text.contains("lrlab='/opt/lr lab/bin/lrlab'\n"));
    assert!(text.contains("scontrol requeue \"$me\""));

    // Values that an #SBATCH line cannot carry are refused.
    let mut bad = options("/x/lrlab");
    bad.time = Some("1:00\n#SBATCH --x".into());
    assert!(lrlab::is_input_error(&bad.validate(&sweep).unwrap_err()));
    let e = options("/x/lrlab")
        .validate(Path::new("/tmp/back\\slash"))
        .unwrap_err();
    assert!(e.to_string().contains("`\\`"), "{e}");
}

#[test]
fn arrays_are_split_below_max_array_size_and_only_missing_runs_resubmitted() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    let m = seven_runs(dir.path(), &sweep);
    let mut o = options("/x/lrlab");
    o.array_parallel = None;
    let tasks = tasks_to_submit(&sweep, &m, &o);
    assert_eq!(tasks, [0, 1, 2, 3, 4, 5, 6]);
    // MaxArraySize 3: task ids 0..=2 per array, offsets 0, 3, 6.
    let scripts = write_scripts(&sweep, &m, &o, &tasks, 3).unwrap();
    let got: Vec<_> = scripts
        .iter()
        .map(|a| (a.array.as_str(), a.offset, a.tasks.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("0-2", 0, vec![0, 1, 2]),
            ("0-2", 3, vec![3, 4, 5]),
            ("0", 6, vec![6])
        ]
    );
    let t = std::fs::read_to_string(&scripts[1].path).unwrap();
    assert!(t.contains("task=$((3 + SLURM_ARRAY_TASK_ID))"), "{t}");

    // Finished and failed runs are not resubmitted (failed ones with --retry-failed).
    let done = |i: usize, st: lrlab::run::State| {
        lrlab::run::Status {
            status: st,
            reason: String::new(),
            epoch: 2,
            step: 16,
            updated: 0.0,
            learned: None,
        }
        .write(&m.runs[i].dir(&sweep))
        .unwrap()
    };
    for i in [0, 1, 2, 4, 5] {
        done(i, lrlab::run::State::Done);
    }
    done(6, lrlab::run::State::Failed);
    o.only_missing = true;
    assert_eq!(tasks_to_submit(&sweep, &m, &o), [3]);
    o.retry_failed = true;
    let tasks = tasks_to_submit(&sweep, &m, &o);
    assert_eq!(tasks, [3, 6]);
    let scripts = write_scripts(&sweep, &m, &o, &tasks, 1001).unwrap();
    assert_eq!(scripts.len(), 1, "earlier scripts are replaced");
    assert_eq!(scripts[0].array, "3,6");
    let t = std::fs::read_to_string(&scripts[0].path).unwrap();
    assert!(t.contains("--retry-failed"));
    assert_eq!(std::fs::read_dir(sweep.join("slurm")).unwrap().count(), 1);
    // Two runs per task: tasks are index / 2.
    o.runs_per_task = 2;
    assert_eq!(tasks_to_submit(&sweep, &m, &o), [1, 3]);
}

// ---- a real one-node cluster ----------------------------------------------------------------

/// One cluster at a time in this process: the daemons share the machine's munged, which one
/// cluster's `down` stops under the other's feet.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cluster of tests/slurm-local.sh, stopped when dropped.
struct Cluster {
    script: PathBuf,
    state: tempfile::TempDir,
    /// slurmctld's and slurmd's ports, free ones from the OS (another suite may run a cluster).
    ports: (u16, u16),
    /// Held until the cluster is down (fields drop after `Drop::drop` ran).
    _alone: std::sync::MutexGuard<'static, ()>,
}

impl Cluster {
    fn env(&self, cmd: &mut Command) {
        cmd.env("SLURM_LOCAL_DIR", self.state.path())
            .env("SLURM_LOCAL_CTLD_PORT", self.ports.0.to_string())
            .env("SLURM_LOCAL_SLURMD_PORT", self.ports.1.to_string())
            .env("SLURM_LOCAL_FAKE_GPUS", "4")
            .env("SLURM_LOCAL_CPUS", "4")
            .env("SLURM_CONF", self.state.path().join("slurm.conf"));
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.env(&mut c);
        c
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .output_within(common::DEADLINE_S)
            .expect(program)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // In a drop (perhaps while a failed test unwinds): a deadline without a panic.
        let mut c = Command::new("timeout");
        c.arg("60").arg("bash").arg(&self.script).arg("down");
        self.env(&mut c);
        let _ = c.status();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// Two distinct ports the OS has free now (both bound at once, then released for the daemons).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Start the cluster, or say why it cannot run here.
fn cluster() -> Result<Cluster, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (munged and the fake GPUs need root)".into());
    }
    if !have("slurmctld") && !have("apt-get") {
        return Err("no slurmctld and no apt-get to install it".into());
    }
    let c = Cluster {
        _alone: ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner()),
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm-local.sh"),
        state: tempfile::Builder::new()
            .prefix("slurm-local")
            .tempdir()
            .unwrap(),
        ports: free_ports(),
    };
    let mut up = Command::new("bash");
    up.arg(&c.script).arg("up");
    c.env(&mut up);
    let o = up.output_within(common::DEADLINE_S).unwrap();
    if !o.status.success() {
        if !have("slurmctld") {
            return Err(format!(
                "the slurm packages could not be installed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        panic!("slurm-local.sh up failed: {}", text(&o));
    }
    Ok(c)
}

/// The cluster, or None after saying why it cannot run here (the test then passes as skipped).
fn cluster_or_skip() -> Option<Cluster> {
    match cluster() {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!("skipped: the Slurm integration test cannot run here: {why}");
            None
        }
    }
}

/// Preempt array task `task` (`JOB_I`) whose run is `run`, as `--signal=B:USR1` does before
/// the time limit: SIGUSR1 to its batch shell. Waits for the attempt to be recorded and the
/// requeued task to pend; returns that attempt's record.
fn preempt(c: &Cluster, task: &str, run: &Path) -> serde_json::Value {
    let o = c.run("scancel", &["--signal=USR1", "--batch", task]);
    assert!(o.status.success(), "{}", text(&o));
    wait(180, "the interrupted attempt", || attempts(run).len() == 1);
    wait(180, "the requeued task to pend", || {
        let o = c.run("squeue", &["-h", "-j", task, "-t", "PD"]);
        !o.stdout.is_empty()
    });
    attempts(run)[0].clone()
}

/// Start a requeued task now rather than after Slurm's requeue delay.
fn start_now(c: &Cluster, task: &str) {
    // slurmd refuses a credential issued in the same second as the revocation of the task's
    // previous one ("Job credential revoked": its clock has one-second resolution), which the
    // requeue delay normally avoids; skipping the delay, let the second turn first.
    std::thread::sleep(Duration::from_millis(2100));
    let o = c.run(
        "scontrol",
        &["update", &format!("JobId={task}"), "StartTime=now"],
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// Poll `cond` every 200 ms for at most `secs` seconds (every wait is bounded).
fn wait(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed().as_secs() < secs, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const ZIP: &str = r#"
base = "base.toml"
# Four runs: two short, one that fails when it starts (no such validation split), one long
# enough to be preempted.
[[zip]]
"data.size" = [256, 320, 384, 512]
"data.val_split" = [0, 0, 100000, 0]
"train.epochs" = [2, 2, 2, 12]
"#;

#[test]
fn slurm_array_runs_pins_gpus_isolates_failures_and_requeues_preempted_tasks() {
    let Some(c) = cluster_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(dir.path(), "spec.toml", ZIP);
    // Spaces and quotes in the sweep folder must survive the script and sbatch.
    let sweep = dir.path().join("sweep dir 'q' \"d\" $x");
    let o = c
        .cmd(fx::bin())
        .args([
            "sweep",
            s(&spec),
            "--out",
            s(&sweep),
            "--slurm",
            "--gres",
            "gpu:1",
        ])
        .args(["--time", "10", "--submit"])
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let job = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(job.parse::<u64>().is_ok(), "job id {job:?}");
    let m = Manifest::load(&sweep).unwrap();
    let long = m.runs[3].dir(&sweep);
    assert!(m.runs[3].name.contains("train.epochs=12"));

    // Preempt the long run once it has trained an epoch: SIGUSR1 to its batch shell, as
    // --signal=B:USR1 does before the time limit.
    wait(300, "an epoch of the long run", || {
        lrlab::run::Status::read(&long).is_some_and(|st| st.epoch >= 1)
    });
    // It checkpoints, the script requeues it; skip the requeue delay.
    let task = format!("{job}_3");
    let first = preempt(&c, &task, &long);
    assert_eq!(first["outcome"], "interrupted", "{first}");
    // Only that task was requeued.
    let pending = c.run("squeue", &["-h", "-j", &job, "-t", "PD", "-o", "%i"]);
    assert_eq!(String::from_utf8_lossy(&pending.stdout).trim(), task);
    start_now(&c, &task);
    // An squeue that fails (a busy controller times out) prints nothing on stdout: that is
    // no proof that the array finished, so only a successful, empty listing counts.
    wait(600, "the array to finish", || {
        let o = c.run("squeue", &["-h", "-j", &job]);
        o.status.success() && o.stdout.is_empty()
    });

    // A failing task leaves the others done.
    let states: Vec<String> = m.runs.iter().map(|r| status(&r.dir(&sweep))).collect();
    if states != ["done", "done", "failed", "done"] {
        // What the tasks printed and what each attempt recorded, to tell why.
        let mut logs = String::new();
        for e in std::fs::read_dir(sweep.join("slurm")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "out") {
                let t = std::fs::read_to_string(&p).unwrap_or_default();
                logs.push_str(&format!("--- {}\n{t}\n", p.display()));
            }
        }
        let acct = c.run("scontrol", &["-o", "show", "job", &job]);
        let daemon = |f: &str| {
            let t = std::fs::read_to_string(c.state.path().join(f)).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        panic!(
            "states {states:?}\nattempts of the long run: {:?}\n{logs}\nscontrol:\n{}\n\
             slurmctld.log:\n{}\nslurmd.log:\n{}",
            attempts(&long),
            String::from_utf8_lossy(&acct.stdout),
            daemon("slurmctld.log"),
            daemon("slurmd.log")
        );
    }
    let o = c.run("scontrol", &["-o", "show", "job", &job]);
    let show = String::from_utf8_lossy(&o.stdout).to_string();
    for (i, want) in ["COMPLETED", "COMPLETED", "FAILED", "COMPLETED"]
        .iter()
        .enumerate()
    {
        let line = show
            .lines()
            .find(|l| l.contains(&format!("ArrayTaskId={i} ")))
            .unwrap_or_else(|| panic!("task {i} in\n{show}"));
        assert!(
            line.contains(&format!("JobState={want}")),
            "task {i}: {line}"
        );
    }

    // Each task saw exactly one (fake) GPU; tasks running at the same time saw different ones.
    let mut iv = Vec::new();
    for r in &m.runs {
        for a in attempts(&r.dir(&sweep)) {
            let gpu = a["cuda_visible_devices"].as_str().unwrap_or("").to_string();
            assert!(
                ["0", "1", "2", "3"].contains(&gpu.as_str()),
                "{}: {a}",
                r.name
            );
            assert_eq!(a["runner"], "slurm");
            iv.push((
                a["started"].as_f64().unwrap(),
                a["ended"].as_f64().unwrap(),
                gpu,
            ));
        }
    }
    for (i, x) in iv.iter().enumerate() {
        for y in &iv[i + 1..] {
            if x.0 < y.1 && y.0 < x.1 {
                assert_ne!(x.2, y.2, "two tasks on one GPU at once: {x:?} {y:?}");
            }
        }
    }

    // The preempted task was requeued and resumed from its checkpoint.
    let a = attempts(&long);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0]["slurm_restart_count"], serde_json::Value::Null);
    assert_eq!(a[1]["slurm_restart_count"], "1");
    assert_eq!(a[1]["outcome"], "done");
    let mt = meta(&long);
    assert_eq!(mt["attempts"], 2);
    assert!(mt["resumed_from_step"].as_u64().unwrap() > 0);
    let log = std::fs::read_to_string(sweep.join("slurm").join(format!("{job}_3.out"))).unwrap();
    assert!(log.contains("requeueing job"), "{log}");
    // ... to the curve of an uninterrupted run of the same config.
    let reference = dir.path().join("reference");
    let o = lrlab(&[
        "train",
        s(&long.join("config.toml")),
        "--out",
        s(&reference),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fx::curve(&long), fx::curve(&reference));

    // Resubmitting only what is missing: the failed run, with --retry-failed.
    let o = c
        .cmd(fx::bin())
        .args([
            "sweep",
            s(&spec),
            "--out",
            s(&sweep),
            "--slurm",
            "--only-missing",
        ])
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to submit"));
    let o = c
        .cmd(fx::bin())
        .args([
            "sweep",
            s(&spec),
            "--out",
            s(&sweep),
            "--slurm",
            "--only-missing",
        ])
        .arg("--retry-failed")
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let script = std::fs::read_to_string(sweep.join("slurm/array-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=\"2\""), "{script}");
    let st = lrlab(&["sweep", "status", s(&sweep)]);
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("3 done"),
        "{}",
        text(&st)
    );
}

#[test]
fn hostile_values_reach_the_program_intact_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The program and sweep paths hold spaces, quotes, `$`, backticks and a backslash; the
    // sweep name holds a newline followed by a command.
    let bin_dir = dir
        .path()
        .join("b i'n \"$HOME\" `touch pwned1` $(touch pwned2) \\");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let program = bin_dir.join("lr lab$1");
    let argv_file = dir.path().join("argv");
    write(
        &bin_dir,
        "lr lab$1",
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$ARGV_OUT\"\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sweep = dir.path().join("s w 'q' \"d\" $X `touch pwned3` %x");
    let m = Manifest {
        format: 1,
        name: "evil\ntouch pwned4\n$(touch pwned5)".into(),
        spec: "spec.toml".into(),
        varied: vec![],
        runs: vec![],
    };
    let mut o = options(s(&program));
    o.extra = vec![
        "--comment=a \"b\" $(touch pwned6) `x` \\".into(),
        "-A o'brien".into(),
        "--exclusive".into(),
    ];
    o.runs_per_task = 2;
    o.retry_failed = true;
    o.validate(&sweep).unwrap();
    let text = render_script(&sweep, &m, &o, "0-3", 4, (0, 1));
    let script = write(dir.path(), "array.sbatch", &text);
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(text.contains("#SBATCH -A \"o'brien\"\n"), "{text}");
    assert!(text.contains("#SBATCH --exclusive\n"), "{text}");
    // Every line is a comment, a directive or script: the name's newline did not escape.
    assert!(!text.lines().any(|l| l.starts_with("touch")), "{text}");

    let out = Command::new("bash")
        .arg(&script)
        .current_dir(dir.path())
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("ARGV_OUT", &argv_file)
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let argv = std::fs::read(&argv_file).unwrap();
    let argv: Vec<String> = argv
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8(a.to_vec()).unwrap())
        .collect();
    assert_eq!(
        argv,
        [
            "sweep",
            "run-index",
            s(&sweep),
            "6",
            "--runs-per-task",
            "2",
            "--retry-failed"
        ]
    );
    for i in 1..=6 {
        assert!(!dir.path().join(format!("pwned{i}")).exists(), "pwned{i}");
    }

    // Option names that are not plain names are refused.
    for e in ["--acc$(x)=1", "--a`b`", "-", "--a\"b=1"] {
        let mut bad = options("/x/lrlab");
        bad.extra = vec![e.into()];
        assert!(
            lrlab::is_input_error(&bad.validate(&sweep).unwrap_err()),
            "{e}"
        );
    }
}

/// `srun -n 2 lrlab train RUN` is one run over two processes: the tasks find each other from
/// Slurm's variables alone (rank, world, the step's first node, a port from the job and step
/// ids) and train exactly as `lrlab train --nproc 2` does. Rank 0 alone speaks.
#[test]
fn an_srun_step_of_two_tasks_trains_as_one_run_of_two_processes() {
    if !lrlab::distributed::has_gloo() {
        return;
    }
    let Some(c) = cluster_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "run.toml", BASE);
    let two = dir.path().join("nproc");
    let o = fx::lrlab(&[
        "train",
        s(&cfg),
        "--out",
        s(&two),
        "--nproc",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("srun");
    let o = c
        .cmd("srun")
        .args(["-N", "1", "-n", "2", "--cpus-per-task", "1", "--time", "10"])
        .arg(fx::bin())
        .args(["train", s(&cfg), "--out", s(&out), "--quiet"])
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("done").count(), 1, "rank 0 alone speaks: {err}");
    assert_eq!(meta(&out)["world_size"], 2, "{}", text(&o));
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            fx::without_time(&out.join(f)),
            fx::without_time(&two.join(f)),
            "{f}: srun's two tasks differ from --nproc 2"
        );
    }
}

/// `lrlab sweep --slurm --ranks-per-run 2`: each array task holds two Slurm tasks and runs its
/// run as an srun step of two ranks. Preempted (SIGUSR1 to the batch shell, as before the
/// time limit), both ranks checkpoint at the same step, the task requeues itself, and the
/// run ends with the CSVs of `lrlab train --nproc 2` on the same config.
#[test]
fn a_sweep_of_two_ranks_per_run_is_preempted_requeued_and_resumes() {
    if !lrlab::distributed::has_gloo() {
        return;
    }
    let Some(c) = cluster_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.toml", BASE);
    let spec = write(
        dir.path(),
        "spec.toml",
        "base = \"base.toml\"\n[grid]\n\"train.epochs\" = [12]\n",
    );
    let sweep = dir.path().join("sweep");
    // A batch the ranks do not divide is refused before anything is written.
    let odd = c
        .cmd(fx::bin())
        .args(["sweep", s(&spec), "--out", s(&sweep), "--slurm"])
        .args(["--ranks-per-run", "3"])
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert_eq!(odd.status.code(), Some(2), "{}", text(&odd));
    assert!(text(&odd).contains("--ranks-per-run 3"), "{}", text(&odd));
    assert!(!sweep.exists());
    let o = c
        .cmd(fx::bin())
        .args(["sweep", s(&spec), "--out", s(&sweep), "--slurm"])
        .args(["--ranks-per-run", "2", "--cpus-per-task", "1"])
        .args(["--time", "10", "--submit"])
        .output_within(common::DEADLINE_S)
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let job = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let script = std::fs::read_to_string(sweep.join("slurm/array-0.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --ntasks=\"2\""), "{script}");
    let m = Manifest::load(&sweep).unwrap();
    let run = m.runs[0].dir(&sweep);
    wait(300, "an epoch of the run", || {
        lrlab::run::Status::read(&run).is_some_and(|st| st.epoch >= 1)
    });
    let task = format!("{job}_0");
    let first = preempt(&c, &task, &run);
    let logs = || {
        let mut t = String::new();
        for e in std::fs::read_dir(sweep.join("slurm")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "out") {
                t += &std::fs::read_to_string(&p).unwrap_or_default();
            }
        }
        t + &std::fs::read_to_string(run.join("train.log")).unwrap_or_default()
    };
    assert_eq!(first["outcome"], "interrupted", "{first}\n{}", logs());
    start_now(&c, &task);
    wait(600, "the array to finish", || {
        let o = c.run("squeue", &["-h", "-j", &job]);
        o.status.success() && o.stdout.is_empty()
    });
    assert_eq!(status(&run), "done", "{}", logs());
    assert_eq!(attempts(&run).len(), 2);
    assert_eq!(meta(&run)["world_size"], 2);
    // The same config over two local processes, uninterrupted.
    let two = dir.path().join("nproc");
    let cfg = run.join("config.toml");
    let o = fx::lrlab(&[
        "train",
        s(&cfg),
        "--out",
        s(&two),
        "--nproc",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["steps.csv", "epochs.csv"] {
        assert_eq!(
            fx::without_time(&run.join(f)),
            fx::without_time(&two.join(f)),
            "{f}: the preempted 2-rank run differs from --nproc 2"
        );
    }
}
