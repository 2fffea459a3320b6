//! lrlab's C++ shims over libtorch, in one place with one error convention (`guard.h`):
//! `c10d.cpp` (the rendezvous and the process group, for [`crate::distributed`]) and
//! `switches.cpp` (autocast dtype, determinism, cuDNN's version, for
//! [`crate::train::device`]). `build.rs` compiles them against the libtorch in use.
//!
//! Every entry point returns 0, or -1 with C++'s message in the caller's buffer; [`call`]
//! turns that into an error. No C++ exception reaches Rust.

use anyhow::{bail, Result};
use std::ffi::{c_char, c_int, c_long, c_void, CStr};

extern "C" {
    // c10d.cpp: the process group and its store.
    pub(crate) fn lrlab_dist_backends() -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lrlab_dist_init(
        rank: c_int,
        world: c_int,
        addr: *const c_char,
        port: c_int,
        listen_fd: c_int,
        backend: c_int,
        gloo_host: *const c_char,
        timeout_ms: c_long,
        out: *mut *mut c_void,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn lrlab_dist_allreduce(
        h: *mut c_void,
        ts: *const *mut torch_sys::C_tensor,
        n: usize,
        op: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn lrlab_dist_broadcast(
        h: *mut c_void,
        ts: *const *mut torch_sys::C_tensor,
        n: usize,
        root: c_int,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn lrlab_dist_barrier(h: *mut c_void, err: *mut c_char, len: usize) -> c_int;
    pub(crate) fn lrlab_dist_store_set(
        h: *mut c_void,
        key: *const c_char,
        value: *const c_char,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn lrlab_dist_store_get(
        h: *mut c_void,
        key: *const c_char,
        value: *mut c_char,
        cap: usize,
        err: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn lrlab_dist_destroy(h: *mut c_void);

    // switches.cpp: libtorch's global switches.
    pub(crate) fn lrlab_set_autocast_bf16(bf16: c_int, err: *mut c_char, len: usize) -> c_int;
    pub(crate) fn lrlab_set_deterministic(on: c_int, err: *mut c_char, len: usize) -> c_int;
    pub(crate) fn lrlab_cudnn_version(out: *mut i64, err: *mut c_char, len: usize) -> c_int;
}

/// Room for C++'s error messages.
const ERR_LEN: usize = 4096;

/// Run a shim call that reports failure as -1 and a message; the message becomes the error,
/// prefixed with what was being done.
pub(crate) fn call(what: &str, f: impl FnOnce(*mut c_char, usize) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated string of at most ERR_LEN bytes.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
    bail!("{what}: {}", first_lines(&msg))
}

/// A c10d error without its C++ backtrace: the text before "Exception raised from" or the
/// first `frame #` line (the backtrace's 30-odd lines say nothing to a user).
fn first_lines(msg: &str) -> String {
    let mut kept = Vec::new();
    for line in msg.lines() {
        let l = line.trim();
        if l.starts_with("Exception raised from") || l.starts_with("frame #") {
            break;
        }
        if !l.is_empty() {
            kept.push(l);
        }
    }
    if kept.is_empty() {
        msg.trim().to_string()
    } else {
        kept.join(" ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn c10d_errors_lose_their_backtrace() {
        let msg = "The client socket has failed to connect to [localhost]:1 (errno: 111 - \
                   Connection refused).\nException raised from connect at socket.cpp:1 (most \
                   recent call first):\nframe #0: c10::Error::Error() + 0x1\nframe #1: x\n";
        assert_eq!(
            super::first_lines(msg),
            "The client socket has failed to connect to [localhost]:1 (errno: 111 - Connection \
             refused)."
        );
        assert_eq!(super::first_lines("  plain  "), "plain");
    }
}
