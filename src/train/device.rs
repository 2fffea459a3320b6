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
