//! Errors meant for people: bad input (exit status 2) versus everything else (exit status 1).

use std::fmt;

/// An error caused by the user's input (a config key, a value, a data file) rather than by
/// lrlab or the machine. The binary exits with status 2 when the error chain contains one.
/// The message must name the file, key or value and say what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Build an [`InputError`] wrapped in `anyhow::Error`.
pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InputError(msg.into()))
}

/// Return early with an [`InputError`] built from a format string.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err($crate::error::input_error(format!($($arg)*)))
    };
}

/// True when the error (or any error it wraps) is an [`InputError`].
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<InputError>().is_some())
}
