//! Device slots of the local executor: `--devices cuda:0,cuda:1 | cuda | cpu` and
//! `--per-device K` become a pool of tokens; a run holds one token while it runs and its child
//! sees only that GPU (`CUDA_VISIBLE_DEVICES=<id>`, `train.device = "cuda:0"` inside).

use crate::config::DeviceSpec;
use crate::error::input_error;
use anyhow::Result;

/// What `--devices` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devices {
    /// The CPU.
    Cpu,
    /// These CUDA devices (indices as this process sees them).
    Cuda(Vec<usize>),
}

/// Parse `--devices`: `cpu`, `cuda` (every visible GPU) or `cuda:0,cuda:2`. `gpus` is the
/// number of CUDA devices this process sees; a device that does not exist is an input error.
pub fn parse_devices(spec: &str, gpus: usize) -> Result<Devices> {
    let spec = spec.trim();
    if spec == "cpu" {
        return Ok(Devices::Cpu);
    }
    let none = || {
        input_error(format!(
            "--devices {spec}: this machine has no CUDA device; use --devices cpu"
        ))
    };
    if spec == "cuda" {
        if gpus == 0 {
            return Err(none());
        }
        return Ok(Devices::Cuda((0..gpus).collect()));
    }
    let mut ids = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let Some(Ok(i)) = part.strip_prefix("cuda:").map(str::parse::<usize>) else {
            crate::bail_input!(
                "--devices {spec}: `{part}` is not a device; expected cpu, cuda, or a list \
                 like cuda:0,cuda:1"
            );
        };
        if gpus == 0 {
            return Err(none());
        }
        if i >= gpus {
            crate::bail_input!(
                "--devices {spec}: cuda:{i} does not exist; this machine has {gpus} CUDA \
                 device(s): cuda:0 to cuda:{}",
                gpus - 1
            );
        }
        if ids.contains(&i) {
            crate::bail_input!("--devices {spec}: cuda:{i} is listed twice");
        }
        ids.push(i);
    }
    Ok(Devices::Cuda(ids))
}

/// The GPUs that run configs name (`train.device = "cuda"` or `"cuda:N"`) must exist when no
/// `--devices` overrides them: `runs` are `(run name, train.device)`, `origin` the spec.
pub fn check_config_devices(
    origin: &str,
    runs: &[(String, DeviceSpec)],
    gpus: usize,
) -> Result<()> {
    for (name, device) in runs {
        let DeviceSpec::Cuda(n) = device else {
            continue;
        };
        if n.unwrap_or(0) >= gpus {
            crate::bail_input!(
                "{origin}: run `{name}`: train.device = \"{device}\": this machine has {gpus} \
                 CUDA device(s); choose others with --devices (cpu, cuda, cuda:0,...)"
            );
        }
    }
    Ok(())
}

/// One token of the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The device as the user named it: `cuda:1` or `cpu`.
    pub label: String,
    /// `CUDA_VISIBLE_DEVICES` of the child: the GPU's id (from the runner's own
    /// `CUDA_VISIBLE_DEVICES` list when it has one), or empty on the CPU.
    pub cuda_visible: String,
    /// `train.device` inside the child.
    pub device: DeviceSpec,
}

/// The token pool: `per_device` tokens per GPU, interleaved so runs spread over the GPUs
/// first; `cpu_jobs` tokens for the CPU. `parent_visible` is the runner's own
/// `CUDA_VISIBLE_DEVICES`, which maps the indices it sees to the ids children must be given.
pub fn slots(
    devices: &Devices,
    per_device: usize,
    cpu_jobs: usize,
    parent_visible: Option<&str>,
) -> Vec<Slot> {
    match devices {
        Devices::Cpu => (0..cpu_jobs.max(1))
            .map(|_| Slot {
                label: "cpu".into(),
                cuda_visible: String::new(),
                device: DeviceSpec::Cpu,
            })
            .collect(),
        Devices::Cuda(ids) => {
            let visible: Vec<&str> = parent_visible
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let mut out = Vec::new();
            for _ in 0..per_device.max(1) {
                for &i in ids {
                    let id = visible
                        .get(i)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| i.to_string());
                    out.push(Slot {
                        label: format!("cuda:{i}"),
                        cuda_visible: id,
                        device: DeviceSpec::Cuda(Some(0)),
                    });
                }
            }
            out
        }
    }
}

/// How many runs at once and with how many threads each, so that on the CPU
/// `threads × runs <= cores`. `jobs`: `--jobs` if given; `fixed_threads`: the largest
/// `train.threads` the runs set explicitly (0 if none). Returns `(concurrency, threads for
/// runs whose config says 0, note when --jobs was lowered)`.
pub fn concurrency(
    slots: usize,
    jobs: Option<usize>,
    cores: usize,
    fixed_threads: usize,
    cpu: bool,
) -> (usize, usize, Option<String>) {
    let cores = cores.max(1);
    let mut n = jobs.unwrap_or(slots).min(slots).max(1);
    let mut note = None;
    if cpu && fixed_threads > 0 && n * fixed_threads > cores {
        let m = (cores / fixed_threads).max(1);
        if m < n {
            note = Some(format!(
                "running {m} at a time instead of {n}: runs use train.threads = {fixed_threads} \
                 and this machine has {cores} cores"
            ));
            n = m;
        }
    }
    (n, (cores / n).max(1), note)
}
