//! Figures and reports drawn from the run folders' CSVs.

pub mod plot;
