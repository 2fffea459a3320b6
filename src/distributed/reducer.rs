//! Gradient synchronisation, the one step where a multi-process run differs from one process.
//!
//! Each rank holds its part of the global batch. After backward, the gradients of the parts'
//! loss *sums* are summed over the ranks together with the example counts, and divided by the
//! global count: every rank then steps with the gradient of the global batch's mean loss, as
//! one process would (a plain average of the ranks' mean-loss gradients would be wrong for an
//! uneven last batch).
//!
//! The gradients travel in flat buckets of at most [`BUCKET_BYTES`] (DDP's default cap), packed
//! in reverse parameter order as DDP packs them, one collective per bucket, all in flight
//! together. A [`Reducer`] plans the buckets and allocates their flat buffers once, from the
//! first step's gradients (PyTorch's C++ `Reducer` does the same from the parameters). On resnet20 over 2 CPU processes this is faster than one collective per gradient
//! (`lrlab bench train --nproc 2 --bucket-mb 0` measures the latter; bench/RESULTS.md).

use super::Group;
use anyhow::Result;
use tch::{Kind, Tensor};

/// DDP's default bucket cap (25 MiB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// How a step's gradients become the run's.
pub enum GradSync<'a> {
    /// One process: the batch's gradients as they are.
    Local,
    /// A rank of a multi-process run holding its part of the global batch: the gradients of
    /// the parts' loss sums are summed over the ranks (with the example counts, in the same
    /// collectives) and divided by the global count.
    Ranks(Reducer<'a>),
}

/// What [`GradSync::backward`] learnt from the other ranks.
pub struct Synced {
    /// The global batch's mean loss (one process: the batch's), detached.
    pub loss: Tensor,
    /// Some rank asked to stop (SIGTERM): every rank stops after this same step.
    pub stop: bool,
    /// Some rank wished for a mid-epoch checkpoint: every rank writes it after this step.
    pub checkpoint: bool,
}

impl GradSync<'_> {
    /// Backward from `loss`, the mean loss of this rank's `n` examples, leaving in `grads`
    /// (the parameters' gradients, zeroed before) the gradient of the global batch's mean
    /// loss. `stop` is this rank's wish to stop; with `bucket_bytes` = 0 every gradient gets
    /// its own collective (for the benchmark's comparison).
    pub fn backward(
        &mut self,
        loss: &Tensor,
        n: usize,
        grads: impl FnOnce() -> Vec<Tensor>,
        stop: bool,
    ) -> Result<Synced> {
        let checkpoint = crate::train::stop::take_checkpoint_wish();
        match self {
            GradSync::Local => {
                loss.backward();
                Ok(Synced {
                    loss: loss.detach(),
                    stop,
                    checkpoint,
                })
            }
            GradSync::Ranks(reducer) => {
                let n = n as f64;
                (loss * n).backward();
                let sums = Tensor::from_slice(&[
                    loss.double_value(&[]) * n,
                    n,
                    if stop { 1.0 } else { 0.0 },
                    if checkpoint { 1.0 } else { 0.0 },
                ]);
                reducer.all_reduce(&grads(), &sums)?;
                let total = sums.double_value(&[1]);
                Ok(Synced {
                    loss: (sums.get(0) / total).to_kind(Kind::Float),
                    stop: sums.double_value(&[2]) > 0.0,
                    checkpoint: sums.double_value(&[3]) > 0.0,
                })
            }
        }
    }
}

/// Sums gradients over the ranks of a group in flat buckets whose plan and buffers are made
/// once and kept (made again only if the gradients change: another count, shape or dtype).
pub struct Reducer<'g> {
    group: &'g Group,
    /// Bucket cap in bytes; 0: one collective per gradient.
    cap: usize,
    plan: Option<Plan>,
}

/// The buckets of one set of gradients and their flat buffers.
struct Plan {
    /// What the plan was made for: every gradient's element count and dtype.
    signature: Vec<(i64, Kind)>,
    /// Indices of the gradients in each bucket.
    buckets: Vec<Vec<usize>>,
    /// One flat buffer per bucket.
    flats: Vec<Tensor>,
}

impl<'g> Reducer<'g> {
    /// A reducer over `group` with buckets of at most `cap` bytes (0: one collective per
    /// gradient, for the benchmark's comparison).
    pub fn new(group: &'g Group, cap: usize) -> Reducer<'g> {
        Reducer {
            group,
            cap,
            plan: None,
        }
    }

    /// The group it reduces over.
    pub fn group(&self) -> &'g Group {
        self.group
    }

    /// Sum `grads` and `sums` (`[loss sum, count, stop, checkpoint]`) over the ranks and
    /// divide the gradients by the summed count, in place.
    pub fn all_reduce(&mut self, grads: &[Tensor], sums: &Tensor) -> Result<()> {
        if self.cap == 0 {
            let mut all: Vec<&Tensor> = grads.iter().collect();
            all.push(sums);
            self.group.all_reduce_sum(&all)?;
            let total = sums.double_value(&[1]);
            for g in grads {
                let _ = g.shallow_clone().f_div_scalar_(total)?;
            }
            return Ok(());
        }
        // The same gradients as last step (the usual case) are checked without allocating.
        let same = |p: &Plan| {
            p.signature.len() == grads.len()
                && p.signature
                    .iter()
                    .zip(grads)
                    .all(|(&(n, k), g)| n == g.numel() as i64 && k == g.kind())
        };
        if !self.plan.as_ref().is_some_and(same) {
            let signature: Vec<(i64, Kind)> =
                grads.iter().map(|g| (g.numel() as i64, g.kind())).collect();
            let buckets = buckets(grads, self.cap);
            let flats = buckets
                .iter()
                .map(|b| {
                    let n: i64 = b.iter().map(|&i| signature[i].0).sum();
                    Tensor::empty([n], (grads[b[0]].kind(), grads[b[0]].device()))
                })
                .collect();
            self.plan = Some(Plan {
                signature,
                buckets,
                flats,
            });
        }
        let plan = self.plan.as_mut().expect("planned above");
        for (b, flat) in plan.buckets.iter().zip(&plan.flats) {
            let mut offset = 0;
            for &i in b {
                let n = plan.signature[i].0;
                // reshape copies a channels-last gradient into the buffer's order.
                flat.narrow(0, offset, n).f_copy_(&grads[i].reshape([-1]))?;
                offset += n;
            }
        }
        let mut all: Vec<&Tensor> = plan.flats.iter().collect();
        all.push(sums);
        self.group.all_reduce_sum(&all)?;
        let total = sums.double_value(&[1]);
        for (b, flat) in plan.buckets.iter().zip(&plan.flats) {
            let _ = flat.shallow_clone().f_div_scalar_(total)?;
            let mut offset = 0;
            for &i in b {
                let g = &grads[i];
                let n = plan.signature[i].0;
                // copy_ writes through the gradient's own strides (channels-last included).
                g.shallow_clone()
                    .f_copy_(&flat.narrow(0, offset, n).view(g.size().as_slice()))?;
                offset += n;
            }
        }
        Ok(())
    }
}

/// Indices of `grads` grouped into buckets of at most `cap` bytes (a larger gradient gets a
/// bucket of its own), in reverse order, one dtype per bucket.
fn buckets(grads: &[Tensor], cap: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    let mut kind = None;
    for i in (0..grads.len()).rev() {
        let g = &grads[i];
        let size = g.numel() * g.kind().elt_size_in_bytes();
        let k = Some(g.kind());
        match out.last_mut() {
            Some(b) if kind == k && bytes + size <= cap => {
                b.push(i);
                bytes += size;
            }
            _ => {
                out.push(vec![i]);
                bytes = size;
                kind = k;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_the_cap_and_the_dtype() {
        let g = |n: i64, k: Kind| Tensor::zeros([n], (k, tch::Device::Cpu));
        let grads = vec![
            g(10, Kind::Float),
            g(10, Kind::Float),
            g(100, Kind::Float),
            g(5, Kind::Double),
            g(5, Kind::Double),
        ];
        // 4 bytes × 10 = 40; cap 80 holds two of them; the 400-byte one stands alone.
        assert_eq!(buckets(&grads, 80), vec![vec![4, 3], vec![2], vec![1, 0]]);
        assert_eq!(buckets(&grads, 1 << 20), vec![vec![4, 3], vec![2, 1, 0]]);
    }
}
