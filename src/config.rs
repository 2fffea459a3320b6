//! Run configuration: TOML tables `[data]`, `[model]`, `[optim]`, `[train]`, `[schedule]`.
