//! The distributed engine: one run over several processes through libtorch's own c10d
//! (a TCPStore rendezvous, then ProcessGroupGloo for CPU tensors), reached through the C++
//! shim `src/shim/c10d.cpp`. Nothing here is a hand-written collective: the all-reduce, the broadcast
//! and the rendezvous are libtorch's.
//!
//! Every call returns an error instead of hanging or aborting: a peer that died or stopped
//! answering makes the collective fail within the group's timeout, with c10d's message.
//!
//! - `mod.rs`: [`Group`] (join, all-reduce, broadcast, the store) and [`Rendezvous`].
//! - `reducer.rs`: the gradients' reduction over a group ([`GradSync`], [`Reducer`]).

mod reducer;

pub use reducer::{GradSync, Reducer, Synced, BUCKET_BYTES};

use crate::shim::{
    call, lrlab_dist_allreduce, lrlab_dist_backends, lrlab_dist_barrier, lrlab_dist_broadcast,
    lrlab_dist_destroy, lrlab_dist_init, lrlab_dist_store_get, lrlab_dist_store_set,
};
use anyhow::Result;
use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::time::Duration;
use tch::Tensor;

/// What a rendezvous address `host:port` does, for the message of a rendezvous that did not
/// happen: it does not resolve, refuses or ignores connections, or accepts them (then it is
/// not a torch/lrlab rendezvous, or one that is not answering).
fn diagnose(at: &str) -> String {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs: Vec<_> = match at.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return format!("{at} does not resolve ({e})"),
    };
    let Some(first) = addrs.first() else {
        return format!("{at} does not resolve");
    };
    match TcpStream::connect_timeout(first, Duration::from_secs(1)) {
        Ok(_) => format!(
            "{at} accepts connections but did not answer as a torch/lrlab rendezvous (a \
             TCPStore), so another program may hold the port"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("{at} refuses connections (nothing listens there)")
        }
        Err(e) => format!("{at} cannot be reached ({e})"),
    }
}

/// Whether this build can run multi-process training on CPUs (it found gloo's headers).
pub fn has_gloo() -> bool {
    // SAFETY: a plain C call that takes nothing.
    unsafe { lrlab_dist_backends() & 1 != 0 }
}

/// Where and how to join a group.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    /// This process's rank, 0..world.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Address of rank 0's store (`MASTER_ADDR`).
    pub addr: String,
    /// Its port (`MASTER_PORT`).
    pub port: u16,
    /// A socket already bound to `port` that rank 0 serves on (a launcher's), if any.
    pub listen_fd: Option<i32>,
    /// How long a rendezvous or a collective may wait for the other ranks.
    pub timeout: Duration,
}

/// The collective backend of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: collectives on CPU tensors.
    Gloo,
}

impl Backend {
    /// The name recorded in `meta.json`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
        }
    }

    /// The shim's code for it.
    fn code(self) -> c_int {
        match self {
            Backend::Gloo => 0,
        }
    }
}

/// A process group: this rank's membership in a run over `world` processes.
pub struct Group {
    handle: *mut c_void,
    rank: usize,
    world: usize,
    backend: Backend,
}

// SAFETY: the handle is only used through &self/&mut self; c10d's group is thread-safe for
// the calls made here, and the training thread owns it.
unsafe impl Send for Group {}

impl Group {
    /// Join the group over Gloo (CPU tensors): blocks until every rank has joined, or fails
    /// after `r.timeout` naming what did not happen.
    pub fn join(r: &Rendezvous) -> Result<Group> {
        if !has_gloo() {
            crate::bail_input!(
                "this lrlab was built without gloo's headers, so it cannot train over several \
                 processes: install libgloo-dev (Debian) and rebuild (`make setup build`)"
            );
        }
        let addr = CString::new(r.addr.as_str())?;
        // Gloo binds its own connections to the address the store is reached at.
        let host = CString::new(r.addr.as_str())?;
        let mut handle: *mut c_void = std::ptr::null_mut();
        let what = format!(
            "rank {} of {}: joining the group at {}:{}",
            r.rank, r.world, r.addr, r.port
        );
        // c10d bounds its connection attempts, but not a read from a port that accepted and
        // then says nothing (an HTTP server, a silent listener): a watchdog ends the process
        // once the timeout and a margin have passed.
        let (joined, watch) = std::sync::mpsc::channel::<()>();
        let limit = r.timeout + Duration::from_secs(2);
        let (said, timeout_s) = (what.clone(), r.timeout.as_secs_f64());
        let (at, rank) = (format!("{}:{}", r.addr, r.port), r.rank);
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(limit) {
                let why = if rank == 0 {
                    "the other ranks did not all join".to_string()
                } else {
                    format!(
                        "{}; check MASTER_ADDR and MASTER_PORT, and that rank 0 runs",
                        diagnose(&at)
                    )
                };
                eprintln!(
                    "error: {said}: no rendezvous within train.dist_timeout = {timeout_s} s: {why}"
                );
                std::process::exit(1);
            }
        });
        let result = call(&what, |err, len| {
            // SAFETY: valid C strings, an out pointer to fill, an error buffer of `len`.
            unsafe {
                lrlab_dist_init(
                    r.rank as c_int,
                    r.world as c_int,
                    addr.as_ptr(),
                    r.port as c_int,
                    r.listen_fd.unwrap_or(-1),
                    Backend::Gloo.code(),
                    host.as_ptr(),
                    r.timeout.as_millis() as c_long,
                    &mut handle,
                    err,
                    len,
                )
            }
        });
        drop(joined);
        let _ = watchdog.join();
        result?;
        Ok(Group {
            handle,
            rank: r.rank,
            world: r.world,
            backend: Backend::Gloo,
        })
    }

    /// The collective backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world(&self) -> usize {
        self.world
    }

    fn ptrs(ts: &[&Tensor]) -> Vec<*mut torch_sys::C_tensor> {
        ts.iter()
            .map(|t| t.as_ptr() as *mut torch_sys::C_tensor)
            .collect()
    }

    /// Sum each tensor over the ranks, in place (all in flight together).
    pub fn all_reduce_sum(&self, ts: &[&Tensor]) -> Result<()> {
        self.all_reduce(ts, 0, "all-reduce (sum)")
    }

    /// Average each tensor over the ranks, in place.
    pub fn all_reduce_mean(&self, ts: &[&Tensor]) -> Result<()> {
        self.all_reduce(ts, 1, "all-reduce (mean)")
    }

    fn all_reduce(&self, ts: &[&Tensor], op: c_int, what: &str) -> Result<()> {
        let p = Self::ptrs(ts);
        call(&format!("rank {}: {what}", self.rank), |err, len| {
            // SAFETY: live tensors (borrowed for the call), the group's handle.
            unsafe { lrlab_dist_allreduce(self.handle, p.as_ptr(), p.len(), op, err, len) }
        })
    }

    /// Overwrite the variables of `vs` that `keep` selects with rank 0's (in name order, the
    /// same on every rank).
    pub fn broadcast_vars(
        &self,
        vs: &tch::nn::VarStore,
        keep: impl Fn(&Tensor) -> bool,
    ) -> Result<()> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| keep(v))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<&Tensor> = vars.iter().map(|(_, t)| t).collect();
        tch::no_grad(|| self.broadcast(&refs, 0))
    }

    /// Overwrite each tensor with rank `root`'s, in place.
    pub fn broadcast(&self, ts: &[&Tensor], root: usize) -> Result<()> {
        let p = Self::ptrs(ts);
        call(&format!("rank {}: broadcast", self.rank), |err, len| {
            // SAFETY: live tensors (borrowed for the call), the group's handle.
            unsafe {
                lrlab_dist_broadcast(self.handle, p.as_ptr(), p.len(), root as c_int, err, len)
            }
        })
    }

    /// Wait until every rank has reached this call.
    pub fn barrier(&self) -> Result<()> {
        call(&format!("rank {}: barrier", self.rank), |err, len| {
            // SAFETY: the group's handle and an error buffer.
            unsafe { lrlab_dist_barrier(self.handle, err, len) }
        })
    }

    /// Publish `value` under `key` in the rendezvous store.
    pub fn store_set(&self, key: &str, value: &str) -> Result<()> {
        let (k, v) = (CString::new(key)?, CString::new(value)?);
        call(
            &format!("rank {}: store set {key}", self.rank),
            |err, len| {
                // SAFETY: valid C strings, the group's handle and an error buffer.
                unsafe { lrlab_dist_store_set(self.handle, k.as_ptr(), v.as_ptr(), err, len) }
            },
        )
    }

    /// Read `key` from the rendezvous store, waiting for it up to the group's timeout.
    pub fn store_get(&self, key: &str) -> Result<String> {
        let k = CString::new(key)?;
        let mut value = vec![0 as c_char; 4096];
        call(
            &format!("rank {}: store get {key}", self.rank),
            |err, len| {
                // SAFETY: a valid C string, a value buffer of its length, an error buffer.
                unsafe {
                    lrlab_dist_store_get(
                        self.handle,
                        k.as_ptr(),
                        value.as_mut_ptr(),
                        value.len(),
                        err,
                        len,
                    )
                }
            },
        )?;
        // SAFETY: the shim wrote a NUL-terminated string into the buffer.
        Ok(unsafe { CStr::from_ptr(value.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    }
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group {{ rank: {}, world: {} }}", self.rank, self.world)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the handle came from lrlab_dist_init and is freed once.
        unsafe { lrlab_dist_destroy(self.handle) };
    }
}
