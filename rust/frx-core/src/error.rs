//! Errors returned by the kernels. Every message is one line, meant for an end user.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrxError {
    /// A caller passed a value the kernel cannot work with (bad threshold, wrong lengths, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// A phrase or regular expression in a lexicon could not be compiled.
    #[error("{0}")]
    Pattern(String),
}

pub type Result<T> = std::result::Result<T, FrxError>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(FrxError::InvalidArgument(msg.into()))
}
