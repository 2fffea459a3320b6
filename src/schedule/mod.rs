//! Learning-rate and momentum schedules: pure f64 functions of the optimizer step.
//!
//! A [`Schedule`] is built from a TOML table (the `[schedule]` table of a run config) and a
//! [`RunLength`], and answers, for optimizer update `k` (0-based), the learning rate and the
//! momentum that update uses ("update k uses f(k)"). Every family is a closed form of `k`
//! with no hidden state, so resuming a run is evaluating at `k`; restart and cycle boundaries
//! are found by exact arithmetic (integer division or exact accumulation), never by a
//! floating-point logarithm.
//!
//! Units: lengths are in epochs unless the key says `steps`; fractional epochs are allowed and
//! the epoch of step `k` is `k / steps_per_epoch`. A length in epochs `e` starts at the first
//! step whose epoch is `>= e` ([`RunLength::first_step_at`]).
//!
//! The family is chosen by `kind` (aliases `type`, `family`):
//!
//! | kind | type | follows |
//! |---|---|---|
//! | `constant` | [`constant::Constant`] | — |
//! | `step` | [`step::MultiStep`] | PyTorch MultiStepLR (ResNet paper) |
//! | `exponential` | [`exponential::Exponential`] | PyTorch ExponentialLR per epoch |
//! | `linear` | [`linear::Linear`] | PyTorch LinearLR |
//! | `cosine` | [`cosine::Cosine`] | PyTorch CosineAnnealingLR per step |
//! | `sgdr` | [`sgdr::Sgdr`] | Loshchilov & Hutter 2017; PyTorch CosineAnnealingWarmRestarts; timm |
//! | `clr` | [`clr::Clr`] | Smith 2017; PyTorch CyclicLR |
//! | `one_cycle` | [`one_cycle::OneCycle`] | PyTorch OneCycleLR; fastai fit_one_cycle; Smith & Topin |
//! | `polynomial` | [`polynomial::Polynomial`] | PyTorch PolynomialLR; Keras PolynomialDecay |
//! | `tanh` | [`tanh::Tanh`] | timm TanhLRScheduler |
//! | `flat_cosine` | [`flat_cosine::FlatCosine`] | fastai fit_flat_cos |
//! | `wsd` | [`wsd::Wsd`] | timm WSDLRScheduler |
//! | `sequence` | [`sequence::Sequence`] | PyTorch SequentialLR |
//! | `lr_range` | [`range::LrRange`] | pytorch-lr-finder range test |
//! | `factor` | [`factor::Factor`] | PyTorch LinearLR and ConstantLR (factor form) |
//! | `product` | [`product::Product`] | PyTorch ChainedScheduler |
//! | `plateau` | [`plateau::Plateau`] | PyTorch ReduceLROnPlateau (a function of the logged evaluations) |
//! | `inverse_time` | [`inverse_time::InverseTime`] | Keras InverseTimeDecay; Caffe `inv` |
//!
//! Any family also takes the warmup keys of [`warmup::Warmup`] in the same table.
//! Validation errors are [`crate::InputError`]s naming the key path (`schedule.t_mult`,
//! `schedule.schedules[1].lr_max`), the value and the rule.

pub mod bench;
pub mod clr;
pub mod constant;
pub mod cosine;
pub mod exponential;
pub mod factor;
pub mod flat_cosine;
pub mod inverse_time;
mod keys;
pub mod linear;
pub mod one_cycle;
pub mod plateau;
pub mod polynomial;
pub mod product;
pub mod range;
pub mod sequence;
pub mod sgdr;
pub mod spec_file;
pub mod step;
pub mod tanh;
pub mod warmup;
pub mod wsd;

use crate::bail_input;
use anyhow::Result;
use keys::Keys;

/// The length of a run: how many optimizer steps make an epoch, and how many steps in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLength {
    /// Optimizer steps per epoch (>= 1).
    pub steps_per_epoch: u64,
    /// Optimizer steps in the whole run (>= 1).
    pub total_steps: u64,
}

impl RunLength {
    /// `epochs` whole epochs of `steps_per_epoch` steps; an input error on zero or overflow.
    pub fn from_epochs(epochs: u64, steps_per_epoch: u64) -> Result<RunLength> {
        if epochs == 0 {
            bail_input!("epochs = 0: must be >= 1");
        }
        if steps_per_epoch == 0 {
            bail_input!("steps_per_epoch = 0: must be >= 1");
        }
        let Some(total_steps) = epochs.checked_mul(steps_per_epoch) else {
            bail_input!("epochs = {epochs} x steps_per_epoch = {steps_per_epoch}: too many steps");
        };
        Ok(RunLength {
            steps_per_epoch,
            total_steps,
        })
    }

    /// The (fractional) epoch of step `k`: `k / steps_per_epoch`.
    pub fn epoch(&self, step: u64) -> f64 {
        step as f64 / self.steps_per_epoch as f64
    }

    /// A length in epochs expressed in (fractional) steps.
    pub fn steps(&self, epochs: f64) -> f64 {
        epochs * self.steps_per_epoch as f64
    }

    /// The first step whose epoch `k / steps_per_epoch` is `>= epochs` (0 for `epochs <= 0`).
    /// This is where a milestone, a warmup end or a restart given in epochs takes effect.
    pub fn first_step_at(&self, epochs: f64) -> u64 {
        if epochs.is_nan() || epochs <= 0.0 {
            return 0;
        }
        let k = self.steps_per_epoch as f64;
        let guess = (epochs * k).ceil();
        if guess >= 1.8e19 {
            return u64::MAX;
        }
        let mut s = guess as u64;
        while s > 0 && (s - 1) as f64 / k >= epochs {
            s -= 1;
        }
        while (s as f64 / k) < epochs {
            s += 1;
        }
        s
    }

    fn validate(&self) -> Result<()> {
        if self.steps_per_epoch == 0 {
            bail_input!("run length: steps_per_epoch = 0: must be >= 1");
        }
        if self.total_steps == 0 {
            bail_input!("run length: total_steps = 0: must be >= 1");
        }
        Ok(())
    }
}

/// What every schedule family answers. Implemented by the family types of this module;
/// [`Schedule`] dispatches to them (and applies warmup on top).
pub trait Curve {
    /// Learning rate of optimizer step `k` (0-based), in the family's own run length.
    fn lr(&self, k: u64) -> f64;
    /// Momentum (or Adam β1) of step `k`; `None` leaves it to the optimizer.
    fn momentum(&self, _k: u64) -> Option<f64> {
        None
    }
    /// Exclusive end steps of the family's completed cycles within its run (empty when it
    /// does not cycle).
    fn cycle_ends(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// The families, by `kind`.
#[derive(Clone, Debug)]
enum Family {
    Constant(constant::Constant),
    Step(step::MultiStep),
    Exponential(exponential::Exponential),
    Linear(linear::Linear),
    Cosine(cosine::Cosine),
    Sgdr(sgdr::Sgdr),
    Clr(clr::Clr),
    OneCycle(one_cycle::OneCycle),
    Polynomial(polynomial::Polynomial),
    Tanh(tanh::Tanh),
    FlatCosine(flat_cosine::FlatCosine),
    Wsd(wsd::Wsd),
    Sequence(sequence::Sequence),
    LrRange(range::LrRange),
    Factor(factor::Factor),
    Product(product::Product),
    Plateau(plateau::Plateau),
    InverseTime(inverse_time::InverseTime),
}

/// Every accepted `kind`.
pub const KINDS: &[&str] = &[
    "constant",
    "step",
    "exponential",
    "linear",
    "cosine",
    "sgdr",
    "clr",
    "one_cycle",
    "polynomial",
    "tanh",
    "flat_cosine",
    "wsd",
    "sequence",
    "lr_range",
    "factor",
    "product",
    "plateau",
    "inverse_time",
];

impl Family {
    fn curve(&self) -> &dyn Curve {
        match self {
            Family::Constant(f) => f,
            Family::Step(f) => f,
            Family::Exponential(f) => f,
            Family::Linear(f) => f,
            Family::Cosine(f) => f,
            Family::Sgdr(f) => f,
            Family::Clr(f) => f,
            Family::OneCycle(f) => f,
            Family::Polynomial(f) => f,
            Family::Tanh(f) => f,
            Family::FlatCosine(f) => f,
            Family::Wsd(f) => f,
            Family::Sequence(f) => f,
            Family::LrRange(f) => f,
            Family::Factor(f) => f,
            Family::Product(f) => f,
            Family::Plateau(f) => f,
            Family::InverseTime(f) => f,
        }
    }
}

/// A validated learning-rate and momentum schedule for one run. See the module docs for the
/// families and [`warmup::Warmup`] for the warmup keys every family accepts.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: &'static str,
    len: RunLength,
    family: Family,
    warmup: Option<warmup::Warmup>,
}

impl Schedule {
    /// Build and validate from a TOML table (the `[schedule]` table of a run config).
    pub fn from_table(table: &toml::Table, len: RunLength) -> Result<Schedule> {
        len.validate()?;
        Schedule::build(table, "schedule", len)
    }

    /// Build from a table whose keys are reported as `PATH.KEY` (sequence children use
    /// `schedule.schedules[i]`).
    pub(crate) fn build(table: &toml::Table, path: &str, len: RunLength) -> Result<Schedule> {
        let mut keys = Keys::new(table, path);
        let kind = read_kind(&mut keys)?;
        keys.set_kind(kind);
        keys.declare(&[&KIND_KEYS, warmup::Warmup::KEYS, family_keys(kind)])?;
        let warmup = warmup::Warmup::from_keys(&mut keys, len)?;
        let inner = warmup.as_ref().map_or(len, |w| w.inner_length(len));
        let k = &mut keys;
        let family = match kind {
            "constant" => Family::Constant(constant::Constant::from_keys(k, inner)?),
            "step" => Family::Step(step::MultiStep::from_keys(k, inner)?),
            "exponential" => Family::Exponential(exponential::Exponential::from_keys(k, inner)?),
            "linear" => Family::Linear(linear::Linear::from_keys(k, inner)?),
            "cosine" => Family::Cosine(cosine::Cosine::from_keys(k, inner)?),
            "sgdr" => Family::Sgdr(sgdr::Sgdr::from_keys(k, inner)?),
            "clr" => Family::Clr(clr::Clr::from_keys(k, inner)?),
            "one_cycle" => Family::OneCycle(one_cycle::OneCycle::from_keys(k, inner)?),
            "polynomial" => Family::Polynomial(polynomial::Polynomial::from_keys(k, inner)?),
            "tanh" => Family::Tanh(tanh::Tanh::from_keys(k, inner)?),
            "flat_cosine" => Family::FlatCosine(flat_cosine::FlatCosine::from_keys(k, inner)?),
            "wsd" => Family::Wsd(wsd::Wsd::from_keys(k, inner)?),
            "sequence" => Family::Sequence(sequence::Sequence::from_keys(k, inner)?),
            "lr_range" => Family::LrRange(range::LrRange::from_keys(k, inner)?),
            "factor" => Family::Factor(factor::Factor::from_keys(k, inner)?),
            "product" => Family::Product(product::Product::from_keys(k, inner)?),
            "plateau" => Family::Plateau(plateau::Plateau::from_keys(k, inner)?),
            "inverse_time" => Family::InverseTime(inverse_time::InverseTime::from_keys(k, inner)?),
            _ => unreachable!("read_kind accepts only KINDS"),
        };
        keys.finish()?;
        Ok(Schedule {
            kind,
            len,
            family,
            warmup,
        })
    }

    /// The learning rate optimizer step `step` (0-based) uses.
    pub fn lr(&self, step: u64) -> f64 {
        let curve = self.family.curve();
        match &self.warmup {
            None => curve.lr(step),
            Some(w) => w.lr(step, curve),
        }
    }

    /// The momentum (or Adam β1) step `step` uses. `None`: this schedule leaves momentum to
    /// the optimizer.
    pub fn momentum(&self, step: u64) -> Option<f64> {
        let curve = self.family.curve();
        match &self.warmup {
            None => curve.momentum(step),
            Some(w) => w.momentum(step, curve),
        }
    }

    /// The momentum step `step` uses: the schedule's, or `optimizer` (the optimizer's own)
    /// where the schedule leaves momentum to it.
    pub fn momentum_or(&self, step: u64, optimizer: f64) -> f64 {
        self.momentum(step).unwrap_or(optimizer)
    }

    /// Record an evaluation made once `step` steps were trained, for the schedules whose LR
    /// follows the logged metrics (`plateau`, also as a `product`'s factor); the others
    /// ignore it. The LR of steps `>= step` may change; earlier ones never do.
    pub fn record_eval(&mut self, step: u64, m: &plateau::EvalMetrics) {
        let inner = self
            .warmup
            .as_ref()
            .map_or(step, |w| w.inner_step_from(step));
        match &mut self.family {
            Family::Plateau(p) => p.record(inner, m),
            Family::Product(p) => p.record_eval(inner, m),
            _ => {}
        }
    }

    /// Whether the LR depends on the logged evaluations ([`Schedule::record_eval`]).
    pub fn uses_metrics(&self) -> bool {
        match &self.family {
            Family::Plateau(_) => true,
            Family::Product(p) => p.uses_metrics(),
            _ => false,
        }
    }

    /// The family name (`"sgdr"`, ...), for reports.
    pub fn kind(&self) -> &str {
        self.kind
    }

    /// For SGDR (and anything cyclic: CLR, and sequences holding them): the steps at which a
    /// cycle ends (exclusive end, i.e. the first step after the cycle), within the run; used to
    /// save snapshot ensembles. A run that stops inside a cycle does not list that cycle.
    /// Empty for other families.
    pub fn cycle_ends(&self) -> Vec<u64> {
        let curve = self.family.curve();
        let mut ends = match &self.warmup {
            None => curve.cycle_ends(),
            Some(w) => w.cycle_ends(curve),
        };
        ends.retain(|&e| e <= self.len.total_steps);
        ends
    }

    /// The run length the schedule was built for.
    pub fn run_length(&self) -> RunLength {
        self.len
    }

    /// Number of warmup steps (0 without warmup).
    pub fn warmup_steps(&self) -> u64 {
        self.warmup.as_ref().map_or(0, |w| w.steps())
    }
}

/// `kind` and its aliases.
const KIND_KEYS: [&str; 3] = ["kind", "type", "family"];

/// The keys of family `kind` (one of [`KINDS`]).
fn family_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "constant" => constant::Constant::KEYS,
        "step" => step::MultiStep::KEYS,
        "exponential" => exponential::Exponential::KEYS,
        "linear" => linear::Linear::KEYS,
        "cosine" => cosine::Cosine::KEYS,
        "sgdr" => sgdr::Sgdr::KEYS,
        "clr" => clr::Clr::KEYS,
        "one_cycle" => one_cycle::OneCycle::KEYS,
        "polynomial" => polynomial::Polynomial::KEYS,
        "tanh" => tanh::Tanh::KEYS,
        "flat_cosine" => flat_cosine::FlatCosine::KEYS,
        "wsd" => wsd::Wsd::KEYS,
        "sequence" => sequence::Sequence::KEYS,
        "lr_range" => range::LrRange::KEYS,
        "factor" => factor::Factor::KEYS,
        "product" => product::Product::KEYS,
        "plateau" => plateau::Plateau::KEYS,
        "inverse_time" => inverse_time::InverseTime::KEYS,
        _ => unreachable!("read_kind accepts only KINDS"),
    }
}

/// Read `kind` (or its aliases `type`, `family`) and check it names a family.
fn read_kind(keys: &mut Keys) -> Result<&'static str> {
    let given: Vec<&str> = KIND_KEYS.into_iter().filter(|k| keys.has(k)).collect();
    match given.as_slice() {
        [] => Err(crate::error::input_error(format!(
            "{}: missing; the schedule family, one of {}",
            keys.name("kind"),
            keys::quoted(KINDS)
        ))),
        [key] => {
            let key = *key;
            Ok(keys.choice(key, KINDS)?.expect("present"))
        }
        [_, second, ..] => Err(keys.bad(
            second,
            format!(
                "the family is given twice ({} are aliases; use one)",
                given.join(" and ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
