//! The distributed engine's collectives between real processes: this test binary starts
//! itself twice as ranks 0 and 1 (the child test below, selected by name, reads its rank from
//! the environment), on a port the parent bound and hands to rank 0 as a socket, as the
//! launcher does. Every wait has a deadline: a hang fails in seconds.

use lrlab::dist::{Group, Rendezvous};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

const CHILD: &str = "LRLAB_TEST_DIST_RANK";

/// Ranks started by [`spawn`]: the processes, their output files and the bound socket.
struct Ranks {
    children: Vec<Child>,
    logs: Vec<std::path::PathBuf>,
    _listener: TcpListener,
    _dir: tempfile::TempDir,
}

/// Start `world` ranks of the test `name` of this binary; rank 0 gets the bound socket.
/// Output goes to files (a full pipe would block a rank that logs much).
fn spawn(name: &str, world: usize) -> Ranks {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    // The children inherit the socket: clear close-on-exec.
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut logs = Vec::new();
    for rank in 0..world {
        let log = dir.path().join(format!("rank{rank}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD, rank.to_string())
            .env("LRLAB_TEST_WORLD", world.to_string())
            .env("LRLAB_TEST_PORT", port.to_string())
            .env(
                "LRLAB_TEST_FD",
                if rank == 0 {
                    fd.to_string()
                } else {
                    "-1".into()
                },
            )
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        children.push(child);
        logs.push(log);
    }
    Ranks {
        children,
        logs,
        _listener: listener,
        _dir: dir,
    }
}

/// Wait for every rank within `secs` (killing all and failing on the deadline); each rank's
/// exit code and output.
fn wait_all(mut r: Ranks, secs: u64) -> Vec<(Option<i32>, String)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut codes: Vec<Option<Option<i32>>> = vec![None; r.children.len()];
    while codes.iter().any(Option::is_none) {
        if Instant::now() > deadline {
            for c in &mut r.children {
                let _ = c.kill();
            }
            let logs: Vec<String> = r
                .logs
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect();
            panic!(
                "ranks still running after {secs} s (a hang):\n{}",
                logs.join("\n---\n")
            );
        }
        for (i, c) in r.children.iter_mut().enumerate() {
            if codes[i].is_none() {
                if let Some(st) = c.try_wait().unwrap() {
                    codes[i] = Some(st.code());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    codes
        .into_iter()
        .zip(&r.logs)
        .map(|(c, p)| (c.flatten(), std::fs::read_to_string(p).unwrap_or_default()))
        .collect()
}

/// This process's rendezvous when it runs as a child rank, else None.
fn child_rendezvous() -> Option<Rendezvous> {
    let rank: usize = std::env::var(CHILD).ok()?.parse().unwrap();
    let var = |k: &str| std::env::var(k).unwrap();
    let fd: i32 = var("LRLAB_TEST_FD").parse().unwrap();
    Some(Rendezvous {
        rank,
        world: var("LRLAB_TEST_WORLD").parse().unwrap(),
        addr: "127.0.0.1".into(),
        port: var("LRLAB_TEST_PORT").parse().unwrap(),
        listen_fd: (fd >= 0).then_some(fd),
        timeout: Duration::from_secs(5),
    })
}

/// The child: join, then all-reduce, broadcast, barrier and the store, checking each.
#[test]
fn child_collectives() {
    let Some(r) = child_rendezvous() else { return };
    let g = Group::join(&r).unwrap();
    let (rank, world) = (g.rank() as f64, g.world() as f64);
    // Sum and mean over ranks of tensors of different shapes and dtypes, in one call each.
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (rank + 1.0);
    let b = Tensor::ones([2, 2], (Kind::Double, tch::Device::Cpu)) * (10.0 * rank);
    g.all_reduce_sum(&[&a, &b]).unwrap();
    let tri = world * (world + 1.0) / 2.0;
    assert_eq!(
        Vec::<f32>::try_from(&a).unwrap(),
        vec![tri as f32, 2.0 * tri as f32, 3.0 * tri as f32]
    );
    let sum_b = 10.0 * world * (world - 1.0) / 2.0;
    assert_eq!(
        Vec::<f64>::try_from(b.flatten(0, -1)).unwrap(),
        vec![sum_b; 4]
    );
    let m = Tensor::from_slice(&[rank, 2.0 * rank]);
    g.all_reduce_mean(&[&m]).unwrap();
    let mean = (world - 1.0) / 2.0;
    assert_eq!(Vec::<f64>::try_from(&m).unwrap(), vec![mean, 2.0 * mean]);
    // Rank 1's tensor reaches everyone.
    let c = Tensor::from_slice(&[rank + 0.5; 5]);
    g.broadcast(&[&c], 1).unwrap();
    assert_eq!(Vec::<f64>::try_from(&c).unwrap(), vec![1.5; 5]);
    g.barrier().unwrap();
    g.store_set(&format!("host{}", g.rank()), &format!("h{}", g.rank()))
        .unwrap();
    let other = (g.rank() + 1) % g.world();
    assert_eq!(
        g.store_get(&format!("host{other}")).unwrap(),
        format!("h{other}")
    );
    println!("rank {} ok", g.rank());
}

#[test]
fn two_ranks_all_reduce_broadcast_and_share_the_store() {
    if std::env::var(CHILD).is_ok() || !lrlab::dist::has_gloo() {
        return;
    }
    let ranks = spawn("child_collectives", 2);
    for (rank, (code, out)) in wait_all(ranks, 60).into_iter().enumerate() {
        assert_eq!(code, Some(0), "rank {rank} failed:\n{out}");
        assert!(
            out.contains(&format!("rank {rank} ok")),
            "rank {rank}:\n{out}"
        );
    }
}

/// The child of the fault test: rank 1 exits at once; rank 0 must get an error, not hang.
#[test]
fn child_peer_dies() {
    let Some(r) = child_rendezvous() else { return };
    let g = Group::join(&r).unwrap();
    if g.rank() == 1 {
        std::process::exit(0);
    }
    let t = Tensor::ones([1000], (Kind::Float, tch::Device::Cpu));
    let started = Instant::now();
    let err = (0..3)
        .find_map(|_| g.all_reduce_sum(&[&t]).err())
        .expect("an all-reduce with a dead peer fails");
    let msg = format!("{err:#}");
    assert!(msg.contains("rank 0: all-reduce"), "{msg}");
    println!("rank 0 got an error after {:?}: {msg}", started.elapsed());
}

#[test]
fn a_dead_peer_is_an_error_within_the_timeout() {
    if std::env::var(CHILD).is_ok() || !lrlab::dist::has_gloo() {
        return;
    }
    let ranks = spawn("child_peer_dies", 2);
    let res = wait_all(ranks, 60);
    assert_eq!(res[0].0, Some(0), "rank 0:\n{}", res[0].1);
    assert!(res[0].1.contains("rank 0 got an error"), "{}", res[0].1);
    eprintln!(
        "{}",
        res[0]
            .1
            .lines()
            .find(|l| l.contains("got an error"))
            .unwrap()
    );
}
