//! Learning-rate and momentum schedules: pure f64 functions of the optimizer step.
//! (Being written: see the Foundation issue.)
