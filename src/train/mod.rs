//! The training loop, the optimizer with savable state, checkpoints and resume.
