//! Settings over defaults, the one merge of the workspace: a config's current values, then the
//! fields a user writes (a JSON object, a config file, `--set a.b=v`), field by field. A field
//! the config does not have is an error naming it and the known ones; a value of the wrong type
//! an error naming the field.
//!
//! A config type opts in with [`Settings`]; most take the field-by-field merge as it is. A type
//! whose JSON is a choice among variants — [`MethodConfig`](crate::MethodConfig), written
//! `{"NAME": {settings}}` — says itself how settings apply to it (the same method: over its
//! current settings; another: over that method's published defaults), and a config holding one
//! hands that field to it (as timm's `create_model` takes the entry's defaults and the
//! caller's overrides).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::LossError;

/// Why settings could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Settings must be a JSON object of fields.
    #[error("expected a JSON object of settings, got {found}")]
    NotAnObject {
        /// What was written.
        found: String,
    },
    /// A field the config does not have.
    #[error("unknown field `{field}`; known fields: {}", known.join(", "))]
    UnknownField {
        /// The field written.
        field: String,
        /// The config's fields.
        known: Vec<String>,
    },
    /// A value the field cannot take.
    #[error("field `{field}`: {source}")]
    BadValue {
        /// The field.
        field: String,
        /// What the reader said.
        #[source]
        source: serde_json::Error,
    },
    /// An error inside a nested field.
    #[error("in `{field}`: {source}")]
    InField {
        /// The outer field.
        field: String,
        /// The error inside it.
        #[source]
        source: Box<SettingsError>,
    },
    /// A method name or a method's settings that are not right.
    #[error(transparent)]
    Method(#[from] LossError),
}

impl SettingsError {
    /// `self` as an error inside the field `field`.
    pub fn in_field(self, field: &str) -> Self {
        Self::InField {
            field: field.to_string(),
            source: Box::new(self),
        }
    }
}

/// A config that takes settings over its current values.
pub trait Settings: Serialize + DeserializeOwned {
    /// `self` with the fields of `settings` (a JSON object) applied; see [`merge_fields`].
    fn with_settings(&self, settings: &Value) -> Result<Self, SettingsError> {
        merge_fields(self, settings)
    }
}

/// `config` with the fields of `settings` applied one by one: a nested object merges field by
/// field, any other value replaces; every field must exist, and the config must read back after
/// each (so a bad value is named by its field).
pub fn merge_fields<C: Serialize + DeserializeOwned>(
    config: &C,
    settings: &Value,
) -> Result<C, SettingsError> {
    let fields = object(settings)?;
    let mut merged = to_value(config)?;
    for (field, value) in fields {
        merge_field(&mut merged, field, value)?;
        serde_json::from_value::<C>(merged.clone()).map_err(|source| SettingsError::BadValue {
            field: field.clone(),
            source,
        })?;
    }
    read(merged, "")
}

/// `value` as an object of fields, or the error saying it is not one.
pub fn object(value: &Value) -> Result<&Map<String, Value>, SettingsError> {
    value.as_object().ok_or_else(|| SettingsError::NotAnObject {
        found: value.to_string(),
    })
}

/// Sets `target[field]` to `value`: objects key by key (each key must exist), anything else
/// replaces.
pub fn merge_field(target: &mut Value, field: &str, value: &Value) -> Result<(), SettingsError> {
    let Some(slot) = target
        .as_object_mut()
        .and_then(|fields| fields.get_mut(field))
    else {
        let known = target
            .as_object()
            .map(|fields| fields.keys().cloned().collect())
            .unwrap_or_default();
        return Err(SettingsError::UnknownField {
            field: field.to_string(),
            known,
        });
    };
    match (value, slot.is_object()) {
        (Value::Object(inner), true) => {
            for (key, inner_value) in inner {
                merge_field(slot, key, inner_value).map_err(|e| e.in_field(field))?;
            }
        }
        _ => *slot = value.clone(),
    }
    Ok(())
}

/// A config as JSON.
pub(crate) fn to_value<C: Serialize>(config: &C) -> Result<Value, SettingsError> {
    serde_json::to_value(config).map_err(|source| SettingsError::BadValue {
        field: String::new(),
        source,
    })
}

/// A config read from JSON; an error names `field`.
pub(crate) fn read<C: DeserializeOwned>(value: Value, field: &str) -> Result<C, SettingsError> {
    serde_json::from_value(value).map_err(|source| SettingsError::BadValue {
        field: field.to_string(),
        source,
    })
}

/// Every loss config of the crate takes settings field by field.
macro_rules! field_by_field {
    ($($config:ty),* $(,)?) => {$(impl Settings for $config {})*};
}

field_by_field!(
    crate::SskdConfig,
    crate::KdConfig,
    crate::DkdConfig,
    crate::CrdConfig,
    crate::FitNetConfig,
    crate::VidConfig,
    crate::CorrelationConfig,
    crate::FactorTransferConfig,
    crate::ActivationBoundaryConfig,
    crate::VanillaConfig,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SskdConfig;

    #[test]
    fn fields_override_defaults_and_bad_fields_are_named() {
        let settings = serde_json::json!({"ss_weight": 3.0});
        let config = SskdConfig::new().with_settings(&settings).unwrap();
        assert_eq!((config.ss_weight, config.tf_weight), (3.0, 2.7));
        let unknown = serde_json::json!({"ratio_sss": 1.0});
        let error = SskdConfig::new()
            .with_settings(&unknown)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `ratio_sss`") && error.contains("ratio_ss"),
            "{error}"
        );
        let bad = serde_json::json!({"tf_weight": "x"});
        let error = SskdConfig::new()
            .with_settings(&bad)
            .unwrap_err()
            .to_string();
        assert!(error.contains("field `tf_weight`"), "{error}");
        let error = SskdConfig::new()
            .with_settings(&Value::from(3))
            .unwrap_err();
        assert!(
            matches!(error, SettingsError::NotAnObject { .. }),
            "{error}"
        );
    }
}
