//! Device selection and CPU thread settings.

use crate::config::{DeviceSpec, Precision};
use anyhow::Result;
use tch::Device;

/// Resolve `train.device` to a device that exists on this machine.
pub fn resolve_device(spec: DeviceSpec) -> Result<Device> {
    match spec.device() {
        None => Ok(Device::cuda_if_available()),
        Some(Device::Cuda(n)) => {
            let count = tch::Cuda::device_count();
            if (n as i64) >= count {
                crate::bail_input!(
                    "train.device = \"{spec}\": this machine has {count} CUDA device(s) visible"
                );
            }
            Ok(Device::Cuda(n))
        }
        Some(d) => Ok(d),
    }
}

/// CPU cores this process may use (respects affinity masks and cgroup CPU sets).
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A positive whole number from the environment variable `name`.
fn env_count(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
}

/// `OMP_NUM_THREADS` when it is set to a whole number >= 1 (PyTorch's and torchrun's
/// per-process thread count).
pub fn omp_threads() -> Option<usize> {
    env_count("OMP_NUM_THREADS")
}

/// The intra-op threads `train.threads = 0` means: in a rank that `lrlab train --nproc N`
/// started, its share of the cores (`LRLAB_RANK_THREADS`); else `OMP_NUM_THREADS` when set,
/// as PyTorch honours it (torchrun sets it to 1 for each rank); else every available core.
pub fn default_threads() -> usize {
    env_count("LRLAB_RANK_THREADS")
        .or_else(omp_threads)
        .unwrap_or_else(available_cores)
}

/// Set libtorch's intra-op threads for the calling thread: `threads`, or when 0
/// [`default_threads`]. Returns the number set.
pub fn set_threads(threads: usize) -> usize {
    let n = if threads == 0 {
        default_threads()
    } else {
        threads
    };
    tch::set_num_threads(n as i32);
    n
}

/// Keep freed memory in the process instead of handing it back to the kernel, when the C
/// library is glibc and the user has not tuned its allocator (`GLIBC_TUNABLES` or
/// `MALLOC_*` variables) already. Returns whether the setting was applied.
///
/// Why: a training step frees and re-allocates the same activations every step. By default
/// glibc trims the top of its heap as soon as 2× its mmap threshold is free and serves big
/// blocks with `mmap`, so each step the kernel zeroes and maps the same few hundred MB again
/// (about 70 000 page faults per resnet56 step at batch 128). A fixed mmap threshold at
/// glibc's cap and no trimming make those steps fault-free; the process holds its peak heap,
/// as a caching allocator would.
pub fn keep_freed_memory() -> bool {
    let vars = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    !malloc_tuned_by_user(vars) && set_malloc_thresholds()
}

/// Whether the environment already tunes glibc's allocator: a `glibc.malloc.*` tunable or
/// one of the `MALLOC_*_` variables (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`, ...).
fn malloc_tuned_by_user(vars: impl IntoIterator<Item = (String, String)>) -> bool {
    vars.into_iter().any(|(k, v)| {
        (k == "GLIBC_TUNABLES" && v.contains("glibc.malloc."))
            || (k.starts_with("MALLOC_") && !v.is_empty())
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_malloc_thresholds() -> bool {
    /// Largest block glibc may serve from its heap instead of a fresh `mmap` (its own cap).
    const MMAP_THRESHOLD: i32 = 32 << 20;
    // SAFETY: mallopt only changes the allocator's parameters, under the allocator's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_malloc_thresholds() -> bool {
    false
}

/// A short human name of the device, for `meta.json`.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The libtorch release this binary was compiled against (`version.py` of the build's
/// libtorch), empty when the build could not tell.
pub const LIBTORCH_BUILT_FOR: &str = match option_env!("LRLAB_LIBTORCH_VERSION") {
    Some(v) => v,
    None => "",
};

/// The libtorch this process runs on, which may be another install than the one it was
/// built against (a bundle runs on the machine's own PyTorch).
#[derive(Debug, Clone, PartialEq)]
pub struct Libtorch {
    /// `__version__` of the install (`2.11.0+cu130`), or its `build-version` file.
    pub version: String,
    /// The folder holding `libtorch_cpu.so`.
    pub lib: std::path::PathBuf,
}

/// Find the loaded `libtorch_cpu.so` in this process's memory map, and the version the
/// install beside it declares. None where there is no `/proc` or no version file.
pub fn libtorch_in_use() -> Option<Libtorch> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = libtorch_lib_in_maps(&maps)?;
    let root = lib.parent()?;
    let version = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|v| version_in_version_py(&v))
        .or_else(|| {
            let v = std::fs::read_to_string(root.join("build-version")).ok()?;
            Some(v.trim().to_string()).filter(|v| !v.is_empty())
        })?;
    Some(Libtorch { version, lib })
}

/// The folder of `libtorch_cpu.so` in a `/proc/PID/maps` text.
fn libtorch_lib_in_maps(maps: &str) -> Option<std::path::PathBuf> {
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent())
        .map(|p| p.to_path_buf())
}

/// `'2.11.0+cu130'` out of a `version.py` line `__version__ = '2.11.0+cu130'`.
fn version_in_version_py(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    let v = line.split(['\'', '"']).nth(1)?;
    Some(v.to_string()).filter(|v| !v.is_empty())
}

/// The libtorch version to record in `meta.json`: the one in use, else the one built for.
pub fn libtorch_version() -> String {
    libtorch_in_use().map_or_else(|| LIBTORCH_BUILT_FOR.to_string(), |l| l.version)
}

/// cuDNN's version as libtorch reports it (for example 91002 for 9.10.2); None without CUDA
/// or cuDNN.
pub fn cudnn_version() -> Option<i64> {
    if !tch::Cuda::is_available() {
        return None;
    }
    let mut v = 0i64;
    // SAFETY: a C call into libtorch that writes one integer and at most `len` bytes of `err`.
    let read = crate::shim::call("cuDNN's version", |err, len| unsafe {
        crate::shim::lrlab_cudnn_version(&mut v, err, len)
    });
    read.ok().and(Some(v)).filter(|v| *v > 0)
}

/// What `lrlab info` prints: the build, the libtorch in use, and what CUDA offers.
pub fn info_text() -> String {
    let mut out = format!("lrlab {}", env!("CARGO_PKG_VERSION"));
    if let Some(c) = option_env!("LRLAB_GIT_COMMIT") {
        // A bundle built from a checkout with changes says so ("-dirty").
        let dirty = if c.ends_with("-dirty") { "-dirty" } else { "" };
        out += &format!(" (commit {}{dirty})", &c[..c.len().min(12)]);
    }
    out += "\n";
    match libtorch_in_use() {
        Some(l) => {
            out += &format!("libtorch: {} at {}", l.version, l.lib.display());
            if l.version != LIBTORCH_BUILT_FOR {
                out += &format!(" (built against {LIBTORCH_BUILT_FOR})");
            }
            out += "\n";
        }
        None => out += &format!("libtorch: built against {LIBTORCH_BUILT_FOR}\n"),
    }
    out += if crate::distributed::has_gloo() {
        "multi-process training: yes (c10d, Gloo)\n"
    } else {
        "multi-process training: no (built without Debian's libgloo-dev headers; `make setup`)\n"
    };
    // Which collective backends this build has; NCCL (GPUs) is not built yet.
    out += &format!(
        "collective backends: {}\n",
        if crate::distributed::has_gloo() {
            "gloo (nccl: not built)"
        } else {
            "none (nccl: not built)"
        }
    );
    let devices = tch::Cuda::device_count();
    out += &format!("cuda available: {}\n", tch::Cuda::is_available());
    out += &format!("cuda devices: {devices}\n");
    if devices > 0 {
        match cudnn_version() {
            Some(v) => out += &format!("cudnn: {v}\n"),
            None => out += "cudnn: not available\n",
        }
        for d in 0..devices as usize {
            let bf16 = if bf16_runs_on(Device::Cuda(d)) {
                "yes"
            } else {
                "no"
            };
            out += &format!("cuda:{d} bf16: {bf16}\n");
        }
    }
    out
}

/// Whether bfloat16 kernels run on `device`: a small bf16 matrix product, computed there.
pub fn bf16_runs_on(device: Device) -> bool {
    let a = tch::Tensor::f_ones([8, 8], (tch::Kind::BFloat16, device));
    a.and_then(|a| a.f_matmul(&a))
        .and_then(|p| p.f_to_kind(tch::Kind::Float))
        .map(|p| p.double_value(&[0, 0]) == 8.0)
        .unwrap_or(false)
}

/// Make CUDA autocast regions of the calling thread compute in bfloat16 (libtorch's
/// default is float16, which would need a gradient scaler).
pub fn set_autocast_bf16() -> Result<()> {
    // SAFETY: a C call into libtorch with an integer and the error buffer `call` provides.
    crate::shim::call(
        "setting the autocast dtype to bfloat16",
        |err, len| unsafe { crate::shim::lrlab_set_autocast_bf16(1, err, len) },
    )
}

/// Ask libtorch for deterministic kernels (cuDNN included) or allow the fastest ones.
pub fn set_deterministic(on: bool) -> Result<()> {
    // SAFETY: a C call into libtorch with an integer and the error buffer `call` provides.
    crate::shim::call(
        "changing libtorch's determinism setting",
        |err, len| unsafe { crate::shim::lrlab_set_deterministic(on as i32, err, len) },
    )
}

/// Whether training on `device` under `precision` (`auto`, `fp32`, `bf16`) uses bf16
/// autocast: `auto` means bf16 on CUDA, fp32 on CPU. `bf16` on the CPU is an input error.
pub fn use_bf16(precision: Precision, device: Device) -> Result<bool> {
    match (precision, device.is_cuda()) {
        (Precision::Fp32, _) => Ok(false),
        (Precision::Auto, cuda) => Ok(cuda),
        (Precision::Bf16, true) => Ok(true),
        (Precision::Bf16, false) => crate::bail_input!(
            "train.precision = \"bf16\": mixed precision needs a CUDA device (training runs on the CPU)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_libtorch_in_use_is_read_from_the_memory_map_and_version_py() {
        let maps = "7f00-7f01 r-xp 00000000 fd:01 12 /usr/lib/libc.so.6\n\
                    7f10-7f20 r-xp 00000000 fd:01 34 /opt/py/site-packages/torch/lib/libtorch_cpu.so\n";
        assert_eq!(
            libtorch_lib_in_maps(maps).unwrap(),
            std::path::Path::new("/opt/py/site-packages/torch/lib")
        );
        assert_eq!(
            libtorch_lib_in_maps("7f00-7f01 r-xp 0 fd:01 12 /lib/libc.so.6"),
            None
        );
        let py = "from typing import Optional\n__version__ = '2.11.0+cu130'\ngit_version = 'x'\n";
        assert_eq!(version_in_version_py(py).unwrap(), "2.11.0+cu130");
        assert_eq!(version_in_version_py("git_version = 'x'"), None);
        // This test binary itself runs on the libtorch it was built against.
        let used = libtorch_in_use().expect("libtorch_cpu.so is mapped in a test binary");
        assert_eq!(used.version, LIBTORCH_BUILT_FOR);
        assert!(used.lib.join("libtorch_cpu.so").exists());
    }

    #[test]
    fn a_users_own_malloc_tuning_is_left_alone() {
        assert!(!malloc_tuned_by_user(env(&[
            ("PATH", "/bin"),
            ("HOME", "/h")
        ])));
        assert!(!malloc_tuned_by_user(env(&[(
            "GLIBC_TUNABLES",
            "glibc.rtld.optional_static_tls=4096"
        )])));
        assert!(malloc_tuned_by_user(env(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.trim_threshold=0"
        )])));
        assert!(malloc_tuned_by_user(env(&[("MALLOC_ARENA_MAX", "2")])));
        assert!(malloc_tuned_by_user(env(&[(
            "MALLOC_TRIM_THRESHOLD_",
            "0"
        )])));
        assert!(!malloc_tuned_by_user(env(&[("MALLOC_ARENA_MAX", "")])));
    }
}
