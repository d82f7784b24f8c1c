//! Errors of the loss crate.

/// What can go wrong when a loss is computed.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// An input holds NaN or ±∞.
    #[error("{method}: input `{input}` holds NaN or infinite values")]
    NonFinite {
        /// The method.
        method: &'static str,
        /// Which input.
        input: &'static str,
    },
    /// An input is missing or has the wrong shape.
    #[error("{method}: {message}")]
    BadInput {
        /// The method.
        method: &'static str,
        /// What is wrong, with the shapes involved.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("{method}: config field `{field}` = {value} is invalid: {reason}")]
    BadConfig {
        /// The method.
        method: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The allowed range.
        reason: &'static str,
    },
}
