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

impl LossError {
    /// `Ok` when the config field `field` of `method` is a positive, finite number.
    pub(crate) fn require_positive(
        method: &'static str,
        field: &'static str,
        value: f64,
    ) -> Result<(), Self> {
        if value > 0.0 && value.is_finite() {
            Ok(())
        } else {
            Err(Self::BadConfig {
                method,
                field,
                value,
                reason: "must be a positive number",
            })
        }
    }
}
