//! The run folder's logs during a training: `steps.csv`, `epochs.csv` and the Hessian-free
//! estimates, open for appending, and the step rows whose losses are read in batches (one
//! device sync per flush, not per step).

use super::checkpoint::Progress;
use super::hf_lr;
use crate::run::{CsvLog, StepRow};
use anyhow::Result;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A step's row, its loss still on the device until the next flush.
pub(super) struct PendingRow {
    pub(super) step: u64,
    pub(super) epoch: f64,
    pub(super) lr: f64,
    pub(super) momentum: f64,
    pub(super) loss: Tensor,
    pub(super) time: f64,
    /// Written to `steps.csv` (else only checked for divergence).
    pub(super) log: bool,
}

/// The run folder's logs, open for appending (on rank 0; the other ranks' rows go nowhere).
pub(super) struct Logs {
    pub(super) steps: CsvLog,
    pub(super) epochs: CsvLog,
    /// `hf_lr.csv` and `hf_lr_layers.csv`, when `train.hf_lr_every` is set.
    pub(super) hf: Option<(CsvLog, CsvLog)>,
}

impl Logs {
    /// Open the logs of `out`, cut back to what the checkpoint at `progress` holds.
    pub(super) fn open(
        writer: bool,
        out: &Path,
        progress: &Progress,
        hf: Option<&hf_lr::Tracker>,
    ) -> Result<Logs> {
        let steps = CsvLog::open_if(
            writer,
            &out.join(crate::run::STEPS),
            crate::run::STEPS_HEADER,
            progress.step,
        )?;
        let epochs = CsvLog::open_if(
            writer,
            &out.join(crate::run::EPOCHS),
            crate::run::EPOCHS_HEADER,
            progress.epoch + 1,
        )?;
        // A window's row is written once θ_{s+2k} exists (k the stride): rows up to step
        // P − 2k belong to a checkpoint at step P.
        let hf = match hf {
            Some(h) => {
                let keep = (progress.step + 1).saturating_sub(2 * h.stride());
                Some((
                    CsvLog::open_if(
                        writer,
                        &out.join(crate::run::HF_LR),
                        &hf_lr::header(h.caffe()),
                        keep,
                    )?,
                    CsvLog::open_if(
                        writer,
                        &out.join(crate::run::HF_LR_LAYERS),
                        &hf_lr::layers_header(h.caffe()),
                        keep,
                    )?,
                ))
            }
            None => None,
        };
        Ok(Logs { steps, epochs, hf })
    }

    /// Flush every log to disk (before a checkpoint, so that the rows it covers are there).
    pub(super) fn sync(&mut self) -> Result<()> {
        self.steps.sync()?;
        self.epochs.sync()?;
        if let Some((log, layers)) = &mut self.hf {
            log.sync()?;
            layers.sync()?;
        }
        Ok(())
    }
}

/// Read the pending losses (one device sync), write the logged rows to `log`, and say why
/// the run diverged if a loss did (`diverge_loss`).
pub(super) fn flush(
    pending: &mut Vec<PendingRow>,
    log: &mut CsvLog,
    diverge_loss: f64,
) -> Result<Option<String>> {
    if pending.is_empty() {
        return Ok(None);
    }
    let losses: Vec<f64> = Vec::<f64>::try_from(
        Tensor::stack(
            &pending
                .iter()
                .map(|r| r.loss.to_kind(Kind::Double))
                .collect::<Vec<_>>(),
            0,
        )
        .to_device(Device::Cpu),
    )?;
    let mut diverged = None;
    for (r, loss) in pending.iter().zip(losses) {
        if r.log {
            let row = StepRow {
                step: r.step,
                epoch: r.epoch,
                lr: r.lr,
                momentum: r.momentum,
                loss,
                time_s: Some(r.time),
            };
            log.row(&row.fields())?;
        }
        if !loss.is_finite() || loss > diverge_loss {
            diverged = Some(format!(
                "training loss {loss} at step {} (lr {}) exceeds train.diverge_loss = {diverge_loss} or is not finite",
                r.step, r.lr
            ));
            break;
        }
    }
    pending.clear();
    Ok(diverged)
}
