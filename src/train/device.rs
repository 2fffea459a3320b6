//! Device selection and CPU thread settings.

use anyhow::Result;
use tch::Device;

/// Resolve `train.device` to a device that exists on this machine.
pub fn resolve_device(s: &str) -> Result<Device> {
    match crate::config::parse_device(s)? {
        None => Ok(Device::cuda_if_available()),
        Some(Device::Cuda(n)) => {
            let count = tch::Cuda::device_count();
            if (n as i64) >= count {
                crate::bail_input!(
                    "train.device = {s:?}: this machine has {count} CUDA device(s) visible"
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

/// Set libtorch's intra-op threads for the calling thread: `threads`, or every available
/// core when 0. Returns the number set.
pub fn set_threads(threads: usize) -> usize {
    let n = if threads == 0 {
        available_cores()
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

extern "C" {
    fn lrlab_set_autocast_bf16(bf16: i32) -> i32;
    fn lrlab_set_deterministic(on: i32) -> i32;
}

/// Make CUDA autocast regions of the calling thread compute in bfloat16 (libtorch's
/// default is float16, which would need a gradient scaler).
pub fn set_autocast_bf16() -> Result<()> {
    // SAFETY: a plain C call into libtorch with an integer argument.
    if unsafe { lrlab_set_autocast_bf16(1) } != 0 {
        anyhow::bail!("libtorch refused to set the autocast dtype to bfloat16");
    }
    Ok(())
}

/// Ask libtorch for deterministic kernels (cuDNN included) or allow the fastest ones.
pub fn set_deterministic(on: bool) -> Result<()> {
    // SAFETY: a plain C call into libtorch with an integer argument.
    if unsafe { lrlab_set_deterministic(on as i32) } != 0 {
        anyhow::bail!("libtorch refused to change its determinism setting");
    }
    Ok(())
}

/// Whether training on `device` under `precision` (`auto`, `fp32`, `bf16`) uses bf16
/// autocast: `auto` means bf16 on CUDA, fp32 on CPU. `bf16` on the CPU is an input error.
pub fn use_bf16(precision: &str, device: Device) -> Result<bool> {
    match (precision, device.is_cuda()) {
        ("fp32", _) => Ok(false),
        ("auto", cuda) => Ok(cuda),
        ("bf16", true) => Ok(true),
        ("bf16", false) => crate::bail_input!(
            "train.precision = \"bf16\": mixed precision needs a CUDA device (training runs on the CPU)"
        ),
        (other, _) => crate::bail_input!(
            "train.precision = {other:?}: expected \"auto\", \"fp32\" or \"bf16\""
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
