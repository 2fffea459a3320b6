//! Datasets in their official formats and the batch loader.
