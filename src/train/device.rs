//! Device selection and CPU thread settings.

use anyhow::Result;
use tch::Device;

/// Parse `train.device`: `auto`, `cpu`, `cuda` or `cuda:N`. `auto` resolves at run time.
pub fn parse_device(s: &str) -> Result<Option<Device>> {
    match s {
        "auto" => Ok(None),
        "cpu" => Ok(Some(Device::Cpu)),
        "cuda" => Ok(Some(Device::Cuda(0))),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Some(Device::Cuda(n))),
            _ => crate::bail_input!(
                "train.device = {s:?}: expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
            ),
        },
    }
}

/// Resolve `train.device` to a device that exists on this machine.
pub fn resolve_device(s: &str) -> Result<Device> {
    match parse_device(s)? {
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
