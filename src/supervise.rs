//! Child processes that never outlive lrlab, and the policy of a group of them: the ranks of
//! `lrlab train --nproc` and the runs of a sweep are both started and watched here.
//!
//! Every child gets the parent-death signal (SIGTERM: it checkpoints and stops, as it would on
//! a Ctrl-C) and refuses to start if its parent is already gone, so that even a runner killed
//! outright (kill -9, an OOM kill) leaves nothing running. A [`Supervisor`] forwards a stop to
//! every child as SIGTERM, kills them (SIGKILL) on a second stop, and collects exit statuses.

use std::os::fd::RawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Exit {
    fn of(st: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            // Neither: not a state a reaped child can be in; read it as a failure.
            (None, None) => Exit::Code(1),
        }
    }

    /// The exit status, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }

    /// The signal that ended it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            Exit::Code(_) => None,
            Exit::Signal(s) => Some(s),
        }
    }

    /// The status as a shell reports it: the code, or 128 + the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// A child started by [`spawn`].
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    /// The signal that asks it to stop at a safe point.
    stop_signal: i32,
}

/// Start `cmd` as a child that gets SIGTERM when this process dies, keeping open in it the
/// descriptors `inherit` (close-on-exec stays set here, so no other child gets them).
pub fn spawn(cmd: &mut Command, inherit: &[RawFd]) -> std::io::Result<Child> {
    spawn_stopped_by(cmd, inherit, libc::SIGTERM)
}

/// [`spawn`] for a child that is asked to stop with `stop_signal` instead of SIGTERM (when
/// this process dies too): `srun` ends its step at once on SIGTERM but forwards SIGUSR1 to
/// every task, which then checkpoints.
pub fn spawn_stopped_by(
    cmd: &mut Command,
    inherit: &[RawFd],
    stop_signal: i32,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let inherit = inherit.to_vec();
    // SAFETY: only async-signal-safe calls (prctl, getppid, fcntl) between fork and exec, on
    // memory allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, stop_signal as libc::c_ulong);
            // The parent died between fork and prctl: the signal would never come.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent exited"));
            }
            for &fd in &inherit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
    Ok(Child {
        inner: cmd.spawn()?,
        stop_signal,
    })
}

impl Child {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Send `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to a child this process started and has not reaped.
        unsafe { libc::kill(self.inner.id() as libc::pid_t, sig) };
    }

    /// How it ended, if it has.
    pub fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        Ok(self.inner.try_wait()?.map(Exit::of))
    }

    /// Its standard output, when it was piped (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }
}

/// What a stop request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The first: every child was sent its stop signal (they checkpoint and stop).
    Terminate,
    /// A later one: every child was killed.
    Kill,
}

/// A group of children, each with a tag `T` (a rank, a sweep's run), stopped together.
#[derive(Debug)]
pub struct Supervisor<T> {
    children: Vec<(Child, T)>,
    stop: Arc<AtomicBool>,
    terminating: bool,
}

impl<T> Supervisor<T> {
    /// An empty group; `stop` is the flag this process's signal handlers set.
    pub fn new(stop: Arc<AtomicBool>) -> Supervisor<T> {
        Supervisor {
            children: Vec::new(),
            stop,
            terminating: false,
        }
    }

    /// Watch `child`.
    pub fn add(&mut self, child: Child, tag: T) {
        self.children.push((child, tag));
    }

    /// Children still running (not yet reaped).
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// No child left.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The running children's tags.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        self.children.iter().map(|(_, t)| t)
    }

    /// The running children.
    pub fn children(&mut self) -> impl Iterator<Item = (&mut Child, &mut T)> {
        self.children.iter_mut().map(|(c, t)| (c, t))
    }

    /// Whether the children were asked to stop (by a signal or by [`Supervisor::terminate`]).
    pub fn terminating(&self) -> bool {
        self.terminating
    }

    /// Act on a stop requested since the last call (the flag is cleared, so each signal
    /// counts): the first sends every child SIGTERM, any later one kills them.
    pub fn forward_stop(&mut self) -> Option<Stop> {
        if !self.stop.swap(false, Ordering::SeqCst) {
            return None;
        }
        if self.terminating {
            self.kill();
            Some(Stop::Kill)
        } else {
            self.terminate();
            Some(Stop::Terminate)
        }
    }

    /// Ask every child to stop (its stop signal, normally SIGTERM); a stop requested after
    /// this kills them.
    pub fn terminate(&mut self) {
        self.terminating = true;
        for (c, _) in &self.children {
            c.signal(c.stop_signal);
        }
    }

    /// Kill every child (SIGKILL).
    pub fn kill(&mut self) {
        self.terminating = true;
        for (c, _) in &self.children {
            c.signal(libc::SIGKILL);
        }
    }

    /// The children that have ended since the last call, in the order they were added.
    pub fn reap(&mut self) -> std::io::Result<Vec<(T, Exit)>> {
        let mut ended = Vec::new();
        let mut i = 0;
        while i < self.children.len() {
            match self.children[i].0.try_wait()? {
                Some(exit) => {
                    let (_, tag) = self.children.remove(i);
                    ended.push((tag, exit));
                }
                None => i += 1,
            }
        }
        Ok(ended)
    }
}

impl<T> Drop for Supervisor<T> {
    /// A supervisor dropped with children left (an error on the way) asks them to stop, as
    /// this process's death would.
    fn drop(&mut self) {
        for (c, _) in &self.children {
            c.signal(c.stop_signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn reap_all<T>(s: &mut Supervisor<T>) -> Vec<(T, Exit)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        while !s.is_empty() {
            assert!(Instant::now() < deadline, "children still running");
            out.extend(s.reap().unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    }

    #[test]
    fn exits_are_collected_with_their_codes_and_signals() {
        let mut s = Supervisor::new(Arc::new(AtomicBool::new(false)));
        for (i, script) in ["exit 0", "exit 3", "kill -TERM $$"].iter().enumerate() {
            let c = spawn(Command::new("sh").args(["-c", script]), &[]).unwrap();
            s.add(c, i);
        }
        let mut got = reap_all(&mut s);
        got.sort_by_key(|(i, _)| *i);
        assert_eq!(
            got,
            vec![
                (0, Exit::Code(0)),
                (1, Exit::Code(3)),
                (2, Exit::Signal(libc::SIGTERM))
            ]
        );
        assert_eq!(got[2].1.shell_code(), 128 + libc::SIGTERM);
    }

    #[test]
    fn a_first_stop_terminates_and_a_second_kills() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut s = Supervisor::new(Arc::clone(&stop));
        // A child that ignores SIGTERM: only the second stop ends it.
        let mut c = spawn(
            Command::new("sh")
                .args([
                    "-c",
                    "trap '' TERM; echo ready; while :; do sleep 0.01; done",
                ])
                .stdout(std::process::Stdio::piped()),
            &[],
        )
        .unwrap();
        // Wait until the trap is installed.
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(c.take_stdout().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        s.add(c, ());
        assert_eq!(s.forward_stop(), None);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(s.forward_stop(), Some(Stop::Terminate));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(s.reap().unwrap(), vec![]);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(s.forward_stop(), Some(Stop::Kill));
        assert_eq!(reap_all(&mut s), vec![((), Exit::Signal(libc::SIGKILL))]);
    }
}
