//! Checkpoints: weights, optimizer state and the loop's progress in one safetensors file,
//! written to a temporary file in the run folder and renamed into place, so that a kill at
//! any moment leaves either the previous checkpoint or the new one, never a torn file.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

/// File name of the checkpoint inside a run folder.
pub const CHECKPOINT: &str = crate::run::CHECKPOINT;

/// Where the loop stands; everything else it needs is recomputed from the config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Completed optimizer steps (the next step to run).
    pub step: u64,
    /// Epoch in progress (0-based).
    pub epoch: u64,
    /// Batches of `epoch` already trained (the data position).
    pub batch: u64,
    /// Optimizer step count (AdamW bias correction).
    pub optim_steps: i64,
    /// Sum over the epoch's trained examples of the per-example loss, so far.
    pub epoch_loss_sum: f64,
    /// Correctly classified training examples of the epoch, so far.
    pub epoch_correct: f64,
    /// Training examples of the epoch, so far.
    pub epoch_seen: u64,
    /// Wall-clock seconds of training before this attempt.
    pub elapsed: f64,
    /// Training seconds spent in the current epoch before this attempt (for images/s).
    pub epoch_train_secs: f64,
    /// The moving average of the Hessian-free LR estimate (`train.hf_lr_every`), so far.
    #[serde(default)]
    pub hf_lr_ema: f64,
    /// The moving average of its Caffe-blob sum (`train.hf_lr_blobs = "caffe"`), so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_lr_caffe_ema: Option<f64>,
}

impl Progress {
    /// The epoch's sums this rank carries on: all of them on rank 0 (`writer`), which holds
    /// the sums over every rank so far, none on the others, which count from zero; the sums
    /// are all-reduced at the epoch's end.
    pub fn for_rank(mut self, writer: bool) -> Progress {
        if !writer {
            self.epoch_loss_sum = 0.0;
            self.epoch_correct = 0.0;
            self.epoch_seen = 0;
        }
        self
    }
}

/// `t` on the host in the standard (row-major) layout, as safetensors stores it: weights and
/// their momentum buffers live channels-last during training.
fn host_copy(t: &Tensor) -> Tensor {
    t.detach().to_device(tch::Device::Cpu).contiguous()
}

/// Save model weights (all VarStore variables, BN statistics included), optimizer state
/// and progress atomically to `dir/checkpoint.safetensors`.
pub fn save(
    dir: &Path,
    vs: &VarStore,
    optim: &[(String, Tensor)],
    progress: &Progress,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), host_copy(&v)))
        .collect();
    for (k, v) in optim {
        named.push((k.clone(), host_copy(v)));
    }
    let json = serde_json::to_vec(progress)?;
    named.push(("progress".to_string(), Tensor::from_slice(&json)));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join(CHECKPOINT);
    // The error names the file being replaced and the temporary file written (removed on
    // failure: the previous checkpoint stays as it was).
    let failed = |tmp: &Path| {
        format!(
            "cannot write {} (temporary file {})",
            path.display(),
            tmp.file_name().unwrap_or_default().to_string_lossy()
        )
    };
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary checkpoint in {}", dir.display()))?;
    Tensor::write_safetensors(&named, tmp.path()).with_context(|| failed(tmp.path()))?;
    crate::util::set_default_mode(tmp.as_file())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| failed(tmp.path()))?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(dir);
    Ok(())
}

/// A checkpoint read back from disk.
pub struct Loaded {
    /// Where the loop stands.
    pub progress: Progress,
    /// Every tensor of the file by name (`model.*`, `optim.*`).
    pub tensors: BTreeMap<String, Tensor>,
}

/// Read `dir/checkpoint.safetensors` if it exists.
pub fn load(dir: &Path) -> Result<Option<Loaded>> {
    let path = dir.join(CHECKPOINT);
    if !path.exists() {
        return Ok(None);
    }
    let list = Tensor::read_safetensors(&path)
        .with_context(|| format!("{}: unreadable checkpoint", path.display()))?;
    let mut tensors: BTreeMap<String, Tensor> = list.into_iter().collect();
    let raw = tensors
        .remove("progress")
        .with_context(|| format!("{}: no progress record", path.display()))?;
    let bytes: Vec<u8> = Vec::<u8>::try_from(raw.to_kind(Kind::Uint8).flatten(0, -1))
        .with_context(|| format!("{}: bad progress record", path.display()))?;
    let progress: Progress = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: bad progress record", path.display()))?;
    Ok(Some(Loaded { progress, tensors }))
}

/// The checkpoint entry `key` as a fresh tensor on `like`'s device and of its kind, after
/// checking its shape; None when the checkpoint has no such entry. The optimizer's buffers and
/// the Hessian-free estimate's copies are read back with it.
pub fn entry_like(
    tensors: &BTreeMap<String, Tensor>,
    key: &str,
    like: &Tensor,
) -> Result<Option<Tensor>> {
    match tensors.get(key) {
        None => Ok(None),
        Some(t) => {
            if t.size() != like.size() {
                anyhow::bail!(
                    "checkpoint entry {key} has shape {:?}, expected {:?}",
                    t.size(),
                    like.size()
                );
            }
            let t = t
                .f_to_device(like.device())
                .and_then(|t| t.f_to_kind(like.kind()))
                .with_context(|| format!("checkpoint entry {key}"))?;
            Ok(Some(t.detach().copy()))
        }
    }
}

/// Copy the `model.*` tensors of a checkpoint into the VarStore's variables.
pub fn restore_weights(vs: &VarStore, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let src = tensors
            .get(&format!("model.{name}"))
            .with_context(|| format!("checkpoint has no weights for {name}"))?;
        if src.size() != var.size() {
            anyhow::bail!(
                "checkpoint weights {name} have shape {:?}, the model has {:?}",
                src.size(),
                var.size()
            );
        }
        var.copy_(src);
    }
    Ok(())
}

/// Save the model weights alone (a snapshot for ensembles) atomically to `path`.
pub fn save_weights(path: &Path, vs: &VarStore) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, host_copy(&v)))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = tempfile::Builder::new()
        .prefix(".snapshot-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    Tensor::write_safetensors(&named, tmp.path())
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::util::set_default_mode(tmp.as_file())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Make a rename durable (best effort: some filesystems cannot sync directories).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::VarStore;

    #[test]
    fn channels_last_weights_and_buffers_round_trip() {
        let vs = VarStore::new(tch::Device::Cpu);
        let conv = vs.root() / "conv";
        let _ = conv.randn("weight", &[4, 3, 3, 3], 0.0, 1.0);
        let b = conv.randn("bias", &[4], 0.0, 1.0);
        crate::models::weights_to_channels_last(&vs);
        let w = vs.variables()["conv.weight"].shallow_clone();
        assert!(!w.is_contiguous(), "the test needs a channels-last weight");
        let buf = crate::util::channels_last(&w.randn_like());
        let dir = tempfile::tempdir().unwrap();
        let progress = Progress {
            step: 7,
            ..Progress::default()
        };
        save(
            dir.path(),
            &vs,
            &[("optim.buf.conv.weight".into(), buf.shallow_clone())],
            &progress,
        )
        .unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.progress.step, 7);
        assert!(loaded.tensors["model.conv.weight"].equal(&w));
        assert!(loaded.tensors["model.conv.bias"].equal(&b));
        assert!(loaded.tensors["optim.buf.conv.weight"].equal(&buf));

        let other = VarStore::new(tch::Device::Cpu);
        let _ = (other.root() / "conv").zeros("weight", &[4, 3, 3, 3]);
        let _ = (other.root() / "conv").zeros("bias", &[4]);
        crate::models::weights_to_channels_last(&other);
        restore_weights(&other, &loaded.tensors).unwrap();
        assert!(other.variables()["conv.weight"].equal(&w));

        let snap = dir.path().join("snap.safetensors");
        save_weights(&snap, &vs).unwrap();
        let back: BTreeMap<String, Tensor> = Tensor::read_safetensors(&snap)
            .unwrap()
            .into_iter()
            .collect();
        assert!(back["conv.weight"].equal(&w));
    }
}
