//! `kind = "constant"`.

use super::keys::Keys;
use super::{Curve, RunLength};
use anyhow::Result;

/// A constant learning rate, `lr(k) = lr`. Keys: `lr` (> 0). Momentum is left to the
/// optimizer. With the warmup keys this is the "warmup then constant" schedule.
#[derive(Clone, Debug)]
pub struct Constant {
    lr: f64,
}

impl Constant {
    /// The keys of this family (besides `kind` and the warmup keys).
    pub(crate) const KEYS: &'static [&'static str] = &["lr"];

    pub(crate) fn from_keys(keys: &mut Keys, _len: RunLength) -> Result<Self> {
        Ok(Constant { lr: keys.lr("lr")? })
    }
}

impl Curve for Constant {
    fn lr(&self, _k: u64) -> f64 {
        self.lr
    }
}
