//! Evaluation: mean loss, top-1 and top-5 accuracy over a whole split, BN in eval mode.

use crate::data::Loader;
use anyhow::Result;
use tch::{nn::ModuleT, Kind, Tensor};

/// Metrics of one evaluation pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    /// Mean cross-entropy loss.
    pub loss: f64,
    /// Top-1 accuracy in [0, 1].
    pub acc: f64,
    /// Top-5 accuracy in [0, 1] (top-k with k = min(5, classes)).
    pub top5: f64,
}

/// Evaluate `net` on every batch of `loader` without gradients. Sums stay on the device and
/// are read once at the end.
pub fn evaluate(net: &dyn ModuleT, loader: &Loader) -> Result<Metrics> {
    let _guard = tch::no_grad_guard();
    let mut loss_sum: Option<Tensor> = None;
    let mut top1: Option<Tensor> = None;
    let mut top5: Option<Tensor> = None;
    let mut seen = 0i64;
    for batch in loader.epoch(0, 0) {
        let batch = batch?;
        let logits = net.forward_t(&batch.images, false).to_kind(Kind::Float);
        let n = batch.labels.size()[0];
        let loss = logits
            .cross_entropy_for_logits(&batch.labels)
            .to_kind(Kind::Double)
            * n as f64;
        let k = logits.size()[1].min(5);
        let (_, idx) = logits.topk(k, 1, true, true);
        let hits = idx.eq_tensor(&batch.labels.unsqueeze(1));
        let c1 = hits.narrow(1, 0, 1).sum(Kind::Double);
        let c5 = hits.sum(Kind::Double);
        loss_sum = Some(match loss_sum {
            None => loss,
            Some(s) => s + loss,
        });
        top1 = Some(match top1 {
            None => c1,
            Some(s) => s + c1,
        });
        top5 = Some(match top5 {
            None => c5,
            Some(s) => s + c5,
        });
        seen += n;
    }
    if seen == 0 {
        anyhow::bail!("the evaluation split is empty");
    }
    let get = |t: Option<Tensor>| {
        t.map(|t| f64::try_from(&t).unwrap_or(f64::NAN))
            .unwrap_or(0.0)
    };
    let n = seen as f64;
    Ok(Metrics {
        loss: get(loss_sum) / n,
        acc: get(top1) / n,
        top5: get(top5) / n,
    })
}
