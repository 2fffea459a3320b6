//! The papers' networks, initialised as in PyTorch/torchvision.
