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
    let sums = loader_sums(net, loader)?;
    if sums.seen == 0 {
        anyhow::bail!("the evaluation split is empty");
    }
    sums.metrics()
}

/// The sums of `net` over every batch of `loader`, without gradients.
fn loader_sums(net: &dyn ModuleT, loader: &Loader) -> Result<Sums> {
    let _guard = tch::no_grad_guard();
    let mut sums = Sums::default();
    for batch in loader.epoch(0, 0) {
        let batch = batch?;
        let logits = net.forward_t(&batch.images, false).to_kind(Kind::Float);
        sums.add_logits(&logits, &batch.labels);
    }
    Ok(sums)
}

/// [`evaluate`] over the ranks of a multi-process run: each rank evaluates its part of the
/// split (`loader` is [`Loader::sharded`]) and the sums are all-reduced, so every rank gets
/// the metrics of the whole split, as one process would (up to the order of the sums).
pub fn evaluate_sharded(
    net: &dyn ModuleT,
    loader: &Loader,
    group: &crate::distributed::Group,
) -> Result<Metrics> {
    let sums = loader_sums(net, loader)?;
    let total = |t: &Option<Tensor>| match t {
        Some(t) => t
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Double)
            .view([1]),
        None => Tensor::zeros([1], (Kind::Double, tch::Device::Cpu)),
    };
    let all = Tensor::cat(
        &[
            total(&sums.loss),
            total(&sums.top1),
            total(&sums.top5),
            Tensor::from_slice(&[sums.seen as f64]),
        ],
        0,
    );
    group.all_reduce_sum(&[&all])?;
    let v = Vec::<f64>::try_from(&all)?;
    if v[3] == 0.0 {
        anyhow::bail!("the evaluation split is empty");
    }
    Ok(Metrics {
        loss: v[0] / v[3],
        acc: v[1] / v[3],
        top5: v[2] / v[3],
    })
}

/// Device-side sums of one evaluation pass (loss, top-1 and top-5 hits, examples), read once
/// at the end. Shared by [`evaluate`] and the snapshot ensembles, so that a snapshot evaluated
/// alone gives exactly the numbers of the run's own evaluation.
#[derive(Default)]
pub(crate) struct Sums {
    loss: Option<Tensor>,
    top1: Option<Tensor>,
    top5: Option<Tensor>,
    seen: i64,
}

impl Sums {
    /// Add a batch of logits: f32 cross-entropy, sums in f64.
    pub(crate) fn add_logits(&mut self, logits: &Tensor, labels: &Tensor) {
        let n = labels.size()[0];
        let loss = logits
            .cross_entropy_for_logits(labels)
            .to_kind(Kind::Double)
            * n as f64;
        self.add(loss, logits, labels);
    }

    /// Add a batch of (averaged, float64) probabilities: the loss is their NLL.
    pub(crate) fn add_probs(&mut self, probs: &Tensor, labels: &Tensor) {
        let picked = probs.gather(1, &labels.unsqueeze(1), false);
        let loss = -picked.log().sum(Kind::Double);
        self.add(loss, probs, labels);
    }

    fn add(&mut self, loss: Tensor, scores: &Tensor, labels: &Tensor) {
        let k = scores.size()[1].min(5);
        let (_, idx) = scores.topk(k, 1, true, true);
        let hits = idx.eq_tensor(&labels.unsqueeze(1));
        let c1 = hits.narrow(1, 0, 1).sum(Kind::Double);
        let c5 = hits.sum(Kind::Double);
        let acc = |s: &mut Option<Tensor>, t: Tensor| {
            *s = Some(match s.take() {
                None => t,
                Some(s) => s + t,
            });
        };
        acc(&mut self.loss, loss);
        acc(&mut self.top1, c1);
        acc(&mut self.top5, c5);
        self.seen += labels.size()[0];
    }

    /// The means (one read of each sum from the device).
    pub(crate) fn metrics(self) -> Result<Metrics> {
        let get = |t: Option<Tensor>| -> Result<f64> {
            Ok(match t {
                Some(t) => f64::try_from(&t)?,
                None => 0.0,
            })
        };
        let n = self.seen.max(1) as f64;
        Ok(Metrics {
            loss: get(self.loss)? / n,
            acc: get(self.top1)? / n,
            top5: get(self.top5)? / n,
        })
    }
}
