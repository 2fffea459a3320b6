//! The batch loader: worker threads prepare `u8` batches ahead of the training step; the
//! consumer turns them into normalised float tensors on the device.
//!
//! Determinism and resume: epoch `e` visits the examples in [`rng::epoch_order`]`(n, seed,
//! e)` (training) or in index order (evaluation); the example at position `p` of that order
//! is augmented with [`rng::example_rng`]`(seed, e, p)` only. Batch `b` holds positions
//! `b*B .. (b+1)*B`. So `epoch(e, b)` yields exactly the batches that `epoch(e, 0)` yields
//! after its first `b`, whatever the number of workers.
//!
//! Threads: with `W` workers, worker `k` prepares batches `start + k, start + k + W, ...`
//! into its own bounded channel of `ceil(prefetch / W)` batches (at least 1), and the
//! consumer reads the channels round-robin, so batches arrive in order with no reordering
//! buffer and at most `prefetch` (or `W`) batches wait in memory (PyTorch's DataLoader
//! works the same way). Workers never call libtorch. Dropping the [`BatchIter`] disconnects
//! the channels and stops the workers after the example they are on.

use super::augment::{self, AugmentSpec};
use super::rng::{self, keyed};
use super::stats::Stats;
use super::{Augment, Source};
use crate::error::input_error;
use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::{Device, Kind, Tensor};

/// How a [`Loader`] batches, orders and augments a split.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// Examples per batch (at least 1).
    pub batch_size: usize,
    /// Drop the last partial batch.
    pub drop_last: bool,
    /// Training: an epoch visits every example and its mirror (`data.mirrors`).
    pub mirrors: bool,
    /// Shuffle each epoch and augment (training); otherwise index order, no augmentation.
    pub train: bool,
    /// The augmentation of a training loader.
    pub augment: AugmentSpec,
    /// The run seed.
    pub seed: u64,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Batches prepared ahead, over all workers.
    pub prefetch: usize,
    /// The split's name in messages (`train`, `test`, `val`).
    pub name: &'static str,
    /// Factor on the normalised input (`data.input_scale`; 1 leaves it as normalised).
    pub input_scale: f64,
}

/// What the workers share.
struct Plan {
    source: Arc<dyn Source>,
    indices: Vec<usize>,
    opts: LoaderOptions,
    skipped: AtomicU64,
    /// `(rank, world)`: this process delivers its share of every batch.
    shard: (usize, usize),
}

impl Plan {
    /// Whether an epoch visits each example and its mirror.
    fn mirrored(&self) -> bool {
        self.opts.mirrors && self.opts.train
    }

    /// Examples an epoch visits: the indices, twice over when mirrored.
    fn epoch_len(&self) -> usize {
        let n = self.indices.len();
        if self.mirrored() {
            2 * n
        } else {
            n
        }
    }

    /// The source example at epoch position `q` (after shuffling), and whether it is the
    /// mirror: positions `n..2n` of a mirrored epoch are the mirrors of `0..n`.
    fn example(&self, q: usize) -> (usize, bool) {
        let n = self.indices.len();
        if self.mirrored() {
            (self.indices[q % n], q >= n)
        } else {
            (self.indices[q], false)
        }
    }
}

/// Batches of one split of a dataset; see the module documentation.
pub struct Loader {
    plan: Arc<Plan>,
    device: Device,
    stats: Stats,
    /// `x_normalised = x_u8 * scale + shift`, both broadcast over `[N, C, H, W]`.
    scale: Tensor,
    shift: Tensor,
}

/// One batch, on the loader's device.
pub struct Batch {
    /// Float `[N, C, H, W]`, scaled to `[0, 1]` and normalised.
    pub images: Tensor,
    /// Int64 `[N]` class indices.
    pub labels: Tensor,
    /// Index of this batch within its epoch (a resumed epoch continues at `index + 1`).
    pub index: usize,
    /// Where these rows sit in the whole batch of a multi-process run: `(first row, rows of
    /// the whole batch)`; `(0, N)` in one process. Dropout draws the whole batch's mask and
    /// takes these rows, so that the ranks' masks are the one process's.
    pub part: (usize, usize),
}

impl Loader {
    /// A loader over the examples `indices` of `source` (in this order for evaluation),
    /// normalising with `stats` and delivering tensors on `device`.
    pub fn new(
        source: Arc<dyn Source>,
        indices: Vec<usize>,
        opts: LoaderOptions,
        stats: Stats,
        device: Device,
    ) -> Result<Loader> {
        anyhow::ensure!(opts.batch_size > 0, "batch size must be at least 1");
        anyhow::ensure!(opts.workers > 0, "at least one loader worker is needed");
        let (c, h, w) = source.shape();
        let (c, h, w) = (c as i64, h as i64, w as i64);
        let opt = (Kind::Float, Device::Cpu);
        // data.input_scale multiplies the normalised value: folded into both factors, in f64.
        anyhow::ensure!(
            opts.input_scale.is_finite() && opts.input_scale > 0.0,
            "input scale must be finite and positive"
        );
        let k = opts.input_scale;
        let (scale, shift) = match &stats {
            Stats::None => (
                Tensor::from_slice(&[(k / 255.0) as f32]),
                Tensor::zeros([1], opt),
            ),
            Stats::MeanStd { mean, std } => {
                if mean.len() != c as usize || std.len() != c as usize {
                    return Err(input_error(format!(
                        "data.mean / data.std have {} / {} values; the images have {c} channels",
                        mean.len(),
                        std.len()
                    )));
                }
                let scale: Vec<f32> = std.iter().map(|s| (k / (255.0 * s)) as f32).collect();
                let shift: Vec<f32> = mean
                    .iter()
                    .zip(std)
                    .map(|(m, s)| (-k * m / s) as f32)
                    .collect();
                (
                    Tensor::from_slice(&scale).view([1, c, 1, 1]),
                    Tensor::from_slice(&shift).view([1, c, 1, 1]),
                )
            }
            Stats::PixelMean(image) => {
                anyhow::ensure!(image.len() == (c * h * w) as usize, "mean image size");
                let shift: Vec<f32> = image.iter().map(|m| (-k * m) as f32).collect();
                (
                    Tensor::from_slice(&[(k / 255.0) as f32]),
                    Tensor::from_slice(&shift).view([1, c, h, w]),
                )
            }
        };
        Ok(Loader {
            plan: Arc::new(Plan {
                source,
                indices,
                opts,
                skipped: AtomicU64::new(0),
                shard: (0, 1),
            }),
            device,
            stats,
            scale: scale.to_device(device),
            shift: shift.to_device(device),
        })
    }

    /// The same loader delivering only rank `rank`'s share of each batch of a run over
    /// `world` processes: the batch's examples (the single-process order, augmentation
    /// included) cut into `world` consecutive parts whose sizes differ by at most one.
    pub fn sharded(&self, rank: usize, world: usize) -> Loader {
        assert!(rank < world, "rank {rank} of {world}");
        let p = &*self.plan;
        Loader {
            plan: Arc::new(Plan {
                source: p.source.clone(),
                indices: p.indices.clone(),
                opts: p.opts.clone(),
                skipped: AtomicU64::new(0),
                shard: (rank, world),
            }),
            device: self.device,
            stats: self.stats.clone(),
            scale: self.scale.shallow_clone(),
            shift: self.shift.shallow_clone(),
        }
    }

    /// Number of examples an epoch visits: the indices, twice over for a training loader with
    /// mirrors (each example and its mirror).
    pub fn len(&self) -> usize {
        self.plan.epoch_len()
    }

    /// True when the loader has no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches per epoch: `ceil(len / batch)`, or `floor` with `drop_last`.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.len(), self.plan.opts.batch_size);
        if self.plan.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Examples per batch.
    pub fn batch_size(&self) -> usize {
        self.plan.opts.batch_size
    }

    /// The source examples this loader visits (sorted for subsets and splits).
    pub fn indices(&self) -> &[usize] {
        &self.plan.indices
    }

    /// Image shape `(C, H, W)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.plan.source.shape()
    }

    /// The normalisation applied after scaling to `[0, 1]`.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The options this loader was built with.
    pub fn options(&self) -> &LoaderOptions {
        &self.plan.opts
    }

    /// Unreadable examples skipped so far (over all epochs).
    pub fn skipped(&self) -> u64 {
        self.plan.skipped.load(Ordering::Relaxed)
    }

    /// The batches of epochs 0, 1, 2, ... one after another (empty when an epoch has no
    /// batch): what a short training that counts steps, not epochs, iterates (`.take(n)`).
    pub fn endless(&self) -> impl Iterator<Item = Result<Batch>> + '_ {
        let epochs = if self.batches_per_epoch() == 0 {
            0
        } else {
            u64::MAX
        };
        (0..epochs).flat_map(move |e| self.epoch(e, 0))
    }

    /// The batches of `epoch` from batch index `start` on (a resumed epoch). Training
    /// loaders shuffle and augment; evaluation loaders visit examples in order, unchanged.
    pub fn epoch(&self, epoch: u64, start: usize) -> BatchIter {
        let end = self.batches_per_epoch();
        let start = start.min(end);
        let order = if self.plan.opts.train {
            Some(Arc::new(rng::epoch_order(
                self.len(),
                self.plan.opts.seed,
                epoch,
            )))
        } else {
            None
        };
        let workers = self.plan.opts.workers.min(end - start);
        let per_worker = self.plan.opts.prefetch.div_ceil(workers.max(1)).max(1);
        let stop = Arc::new(AtomicBool::new(false));
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(workers * (per_worker + 1));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        let mut pending = None;
        for k in 0..workers {
            let (tx, rx) = bounded(per_worker);
            let job = Worker {
                plan: self.plan.clone(),
                order: order.clone(),
                epoch,
                first: start + k,
                step: workers,
                end,
                stop: stop.clone(),
                pool: pool_rx.clone(),
                tx,
            };
            match std::thread::Builder::new()
                .name(format!("lrlab-data-{k}"))
                .spawn(move || job.run())
            {
                Ok(h) => {
                    handles.push(h);
                    receivers.push(rx);
                }
                Err(e) => {
                    pending = Some(anyhow!("cannot start a data loader thread: {e}"));
                    break;
                }
            }
        }
        BatchIter {
            receivers,
            handles,
            stop,
            pool: pool_tx,
            next: start,
            start,
            end,
            pending,
            device: self.device,
            shape: self.shape(),
            scale: self.scale.shallow_clone(),
            shift: self.shift.shallow_clone(),
        }
    }
}

/// A batch as prepared by a worker.
struct RawBatch {
    index: usize,
    /// See [`Batch::part`].
    part: (usize, usize),
    pixels: Vec<u8>,
    labels: Vec<i64>,
    /// `PadMode::Mean` and cutout: per example, 1 where the pixel reads 0 after normalising,
    /// the mean pixel (the crop's padding, the cutout square) (`N x H x W`).
    pad_mask: Option<Vec<u8>>,
}

/// One worker's share of an epoch.
struct Worker {
    plan: Arc<Plan>,
    order: Option<Arc<Vec<usize>>>,
    epoch: u64,
    first: usize,
    step: usize,
    end: usize,
    stop: Arc<AtomicBool>,
    pool: Receiver<Vec<u8>>,
    tx: Sender<Result<RawBatch>>,
}

impl Worker {
    fn run(self) {
        let mut scratch = Vec::new();
        for b in (self.first..self.end).step_by(self.step) {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let pixels = self.pool.try_recv().unwrap_or_default();
            let batch = self.make(b, pixels, &mut scratch);
            let failed = batch.is_err();
            if self.tx.send(batch).is_err() || failed {
                return;
            }
        }
    }

    /// Prepare batch `b` into `pixels`.
    fn make(&self, b: usize, mut pixels: Vec<u8>, scratch: &mut Vec<u8>) -> Result<RawBatch> {
        let plan = &*self.plan;
        let opts = &plan.opts;
        let (c, h, w) = plan.source.shape();
        let chw = c * h * w;
        let lo = b * opts.batch_size;
        let hi = (lo + opts.batch_size).min(plan.epoch_len());
        // A rank of a multi-process run takes its consecutive part of the batch.
        let n = hi - lo;
        let (rank, world) = plan.shard;
        let part = (n * rank / world, n);
        let (lo, hi) = (lo + n * rank / world, lo + n * (rank + 1) / world);
        pixels.resize((hi - lo) * chw, 0);
        let mut labels = Vec::with_capacity(hi - lo);
        let mean_pad = opts.train
            && opts.augment.augment == Augment::CropFlip
            && opts.augment.pad_mode == super::PadMode::Mean;
        let cutout = opts.augment.cutout.filter(|_| opts.train);
        let masked = mean_pad || cutout.is_some();
        let mut mask = if masked {
            vec![0u8; (hi - lo) * h * w]
        } else {
            Vec::new()
        };
        let fetch_aug = if opts.train && opts.augment.augment == Augment::RandomResizedCrop {
            Augment::RandomResizedCrop
        } else {
            Augment::None
        };
        for p in lo..hi {
            if self.stop.load(Ordering::Relaxed) {
                anyhow::bail!("stopped");
            }
            let (index, mirrored) = plan.example(self.order.as_ref().map_or(p, |o| o[p]));
            let mut rng = if opts.train {
                rng::example_rng(opts.seed, self.epoch, p)
            } else {
                keyed(&[0])
            };
            let slot = labels.len();
            let out = &mut pixels[slot * chw..(slot + 1) * chw];
            let ok = plan
                .source
                .fetch(index, fetch_aug, &mut rng, out)
                .with_context(|| format!("{} example {index}", opts.name))?;
            if !ok {
                if plan.skipped.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!(
                        "warning: skipping unreadable {} example {index}; \
                         later ones are only counted",
                        opts.name
                    );
                }
                continue;
            }
            if opts.train {
                // A mirrored epoch's flip is the position's, not a draw.
                let flip = plan.mirrored().then_some(mirrored);
                let crop = augment::apply(&opts.augment, &mut rng, out, (c, h, w), scratch, flip);
                let m = &mut mask[if masked {
                    slot * h * w..(slot + 1) * h * w
                } else {
                    0..0
                }];
                if let (true, Some(crop)) = (mean_pad, crop) {
                    augment::pad_mask((h, w), opts.augment.pad, crop, m);
                }
                if let Some(cut) = cutout {
                    let (ys, xs) = augment::draw_cutout(&mut rng, (h, w), cut);
                    augment::mark(w, ys, xs, m);
                }
            }
            labels.push(plan.source.label(index));
        }
        pixels.truncate(labels.len() * chw);
        mask.truncate(labels.len() * h * w);
        Ok(RawBatch {
            index: b,
            part,
            pixels,
            labels,
            pad_mask: masked.then_some(mask),
        })
    }
}

/// The batches of one epoch, in order; see [`Loader::epoch`].
pub struct BatchIter {
    receivers: Vec<Receiver<Result<RawBatch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    pool: Sender<Vec<u8>>,
    next: usize,
    start: usize,
    end: usize,
    pending: Option<anyhow::Error>,
    device: Device,
    shape: (usize, usize, usize),
    scale: Tensor,
    shift: Tensor,
}

impl BatchIter {
    /// Move a worker's bytes to the device and normalise them there, into a channels-last
    /// float batch.
    fn to_batch(&self, raw: RawBatch) -> Result<Batch> {
        let (c, h, w) = self.shape;
        let n = raw.labels.len() as i64;
        let x =
            Tensor::f_from_data_size(&raw.pixels, &[n, c as i64, h as i64, w as i64], Kind::Uint8)?;
        let y = Tensor::f_from_slice(&raw.labels)?;
        let mask = match &raw.pad_mask {
            Some(m) => Some(
                Tensor::f_from_data_size(m, &[n, 1, h as i64, w as i64], Kind::Uint8)?
                    .f_to_kind(Kind::Float)?
                    .f_to_device(self.device)?,
            ),
            None => None,
        };
        // Recycle the buffer: from_data_size copied it.
        let _ = self.pool.try_send(raw.pixels);
        let (x, y) = if self.device.is_cuda() {
            // Pinned host memory lets the copy run asynchronously with the GPU's work.
            // `_pin_memory` is what `pin_memory` dispatches to; tch's `pin_memory` always
            // passes a device argument, which libtorch 2.x warns is deprecated.
            (
                x.f_internal_pin_memory(self.device)?.f_to_device_(
                    self.device,
                    Kind::Uint8,
                    true,
                    false,
                )?,
                y.f_internal_pin_memory(self.device)?.f_to_device_(
                    self.device,
                    Kind::Int64,
                    true,
                    false,
                )?,
            )
        } else {
            (x.f_to_device(self.device)?, y.f_to_device(self.device)?)
        };
        // Channels-last, as the models' weights are (see `train::step::build_model`): the
        // conversion is done once here, on the bytes, and normalising keeps the layout.
        let images = crate::util::channels_last(&x)
            .f_to_kind(Kind::Float)?
            .f_mul(&self.scale)?
            .f_add(&self.shift)?;
        // PadMode::Mean and cutout: those pixels read 0 after normalising, the mean pixel.
        let images = match &mask {
            Some(m) => images.f_mul(&(1.0 - m))?,
            None => images,
        };
        Ok(Batch {
            images,
            labels: y,
            index: raw.index,
            part: raw.part,
        })
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if let Some(e) = self.pending.take() {
            self.next = self.end;
            return Some(Err(e));
        }
        while self.next < self.end {
            let k = (self.next - self.start) % self.receivers.len();
            self.next += 1;
            match self.receivers[k].recv() {
                Ok(Ok(raw)) if raw.labels.is_empty() => continue,
                Ok(Ok(raw)) => return Some(self.to_batch(raw)),
                Ok(Err(e)) => {
                    self.next = self.end;
                    return Some(Err(e));
                }
                Err(_) => {
                    self.next = self.end;
                    return Some(Err(anyhow!("a data loader thread stopped unexpectedly")));
                }
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.end - self.next))
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Disconnecting wakes workers blocked on a full channel.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
