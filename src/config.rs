//! Config files and `--set FIELD=VALUE` over a config's values, through the one merge of
//! [`sskd_losses::settings`] (field by field; an unknown field or a bad value is an error
//! naming it).

use std::path::{Path, PathBuf};

use serde_json::Value;
pub use sskd_losses::settings::{Settings, SettingsError};

/// Why a config could not be read or completed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("config {path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A field is missing from a file.
    #[error("config {path}: field `{field}` is missing")]
    Missing {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
    /// A field of a file or of an assignment does not fit the config.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// An assignment not written `FIELD=VALUE`.
    #[error("`{assignment}`: expected FIELD=VALUE")]
    Assignment {
        /// What was written.
        assignment: String,
    },
    /// The method's settings are out of range.
    #[error("field `method`: {0}")]
    Method(#[source] sskd_losses::LossError),
    /// An architecture the model table does not have.
    #[error("field `{field}`: unknown architecture `{name}`; known: {}", known.join(", "))]
    UnknownArchitecture {
        /// The field (`teacher`, `student`).
        field: &'static str,
        /// The name written.
        name: String,
        /// The table's names.
        known: Vec<&'static str>,
    },
    /// A value out of its range (zero epochs, a negative learning rate, ...).
    #[error("field `{field}` {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An error in the config file `path`.
    #[error("config {path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    /// `self` as an error of the config file `path` (unchanged if it names a file already).
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Read { .. } | Self::Json { .. } | Self::Missing { .. } | Self::InFile { .. } => {
                self
            }
            other => Self::InFile {
                path: path.to_path_buf(),
                source: Box::new(other),
            },
        }
    }
}

/// The JSON object in the file `path`.
pub fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the JSON object in `path` and applies its fields over `defaults`: a field not in the
/// file keeps its default; an unknown field, or a value of the wrong type, is an error naming the
/// file and the field.
pub fn load_overrides<C: Settings>(path: &Path, defaults: C) -> Result<C, ConfigError> {
    let overrides = read_json(path)?;
    apply_overrides(defaults, &overrides).map_err(|e| ConfigError::from(e).in_file(path))
}

/// Applies the fields of the JSON object `overrides` over `defaults` (see [`load_overrides`]).
pub fn apply_overrides<C: Settings>(defaults: C, overrides: &Value) -> Result<C, SettingsError> {
    defaults.with_settings(overrides)
}

/// Sets `path` (`a.b.c`) of `config` to the JSON text `value` (a bare word is a string): the
/// command-line form `--set student_stage.epochs=1`.
pub fn apply_assignment<C: Settings>(config: C, assignment: &str) -> Result<C, ConfigError> {
    let (path, text) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigError::Assignment {
            assignment: assignment.to_string(),
        })?;
    let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    let mut nested = value;
    for key in path.rsplit('.') {
        nested = serde_json::json!({ key: nested });
    }
    Ok(apply_overrides(config, &nested)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sskd_losses::MethodConfig;

    #[test]
    fn nested_fields_override_from_the_command_line() {
        use crate::experiment::ExperimentConfig;
        let config = ExperimentConfig::new("resnet56".into(), "resnet20".into());
        let config = apply_assignment(config, "student_stage.epochs=3").unwrap();
        let config = apply_assignment(config, "method.sskd.ss_weight=3.0").unwrap();
        let MethodConfig::Sskd(sskd) = &config.method else {
            panic!("{:?}", config.method)
        };
        assert_eq!((sskd.ss_weight, sskd.tf_weight), (3.0, 2.7));
        assert_eq!(
            (config.student_stage.epochs, config.student_stage.lr),
            (3, 0.05)
        );
        let config = apply_assignment(config, "method=kd").unwrap();
        assert_eq!(config.method, MethodConfig::published("kd").unwrap());
        // Another method's setting switches to that method, its other settings published.
        let config = apply_assignment(config, "method.dkd.beta=2").unwrap();
        let MethodConfig::Dkd(dkd) = &config.method else {
            panic!("{:?}", config.method)
        };
        assert_eq!((dkd.beta, dkd.alpha), (2.0, 1.0));
        let error = apply_assignment(config.clone(), "method.dkd.betta=2").unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains("unknown setting `betta`") && error.contains("warmup_epochs"),
            "{error}"
        );
        let error = apply_assignment(config.clone(), "method.crd.nce_kk=2")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown setting `nce_kk`") && error.contains("nce_k"),
            "{error}"
        );
        let error = apply_assignment(config.clone(), "method=kdd")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown method `kdd`"), "{error}");
        let error = apply_assignment(config.clone(), "student_stage.epoch=3")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `epoch`") && error.contains("student_stage"),
            "{error}"
        );
        let error = apply_assignment(config, "student_stage.epochs=-1")
            .unwrap_err()
            .to_string();
        assert!(error.contains("student_stage"), "{error}");
    }
}
