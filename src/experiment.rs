//! Every hyper-parameter of a CIFAR-100 SSKD experiment (the defaults of SSKD's `train_teacher.py`
//! and `train_student.py`) in one config,
//! loadable from JSON (`configs/cifar100/*.json`, one per published teacher → student pair)
//! and overridable field by field (`student_stage.epochs=1`).

use std::path::Path;

use burn::config::Config;
use serde_json::Value;
use sskd_losses::settings::{merge_fields, object, Settings, SettingsError};
use sskd_losses::MethodConfig;
use sskd_train::schedule::LrSchedule;
use sskd_train::Stage;

use crate::config::{load_overrides, read_json, ConfigError};

/// The shape of a stage's learning-rate schedule.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ScheduleShape {
    /// Steps: ×`gamma` at each milestone (SSKD's and CRD's).
    MultiStep,
    /// Cosine annealing from `lr` to 0 over the stage's epochs (`CosineAnnealingLR`).
    Cosine,
}

/// One training stage: epochs and the learning-rate schedule (by default steps, ×`gamma` at
/// each milestone).
#[derive(Config, Debug, PartialEq)]
pub struct StageConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// 0-based epochs at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// The factor.
    #[config(default = 0.1)]
    pub gamma: f64,
    /// The schedule's shape (milestones and gamma are for `MultiStep`).
    #[config(default = "ScheduleShape::MultiStep")]
    pub shape: ScheduleShape,
}

impl StageConfig {
    /// The stage's schedule.
    pub fn schedule(&self) -> LrSchedule {
        match self.shape {
            ScheduleShape::MultiStep => LrSchedule::MultiStep(sskd_train::schedule::MultiStepLr {
                base: self.lr,
                milestones: self.milestones.clone(),
                gamma: self.gamma,
            }),
            ScheduleShape::Cosine => LrSchedule::Cosine(sskd_train::schedule::CosineLr {
                base: self.lr,
                epochs: self.epochs,
                min: 0.0,
            }),
        }
    }
}

/// A teacher → student experiment with SSKD's code defaults.
#[derive(Config, Debug)]
pub struct ExperimentConfig {
    /// Teacher architecture (registry name).
    pub teacher: String,
    /// Student architecture (registry name).
    pub student: String,
    /// Distillation method of stage 3 and its settings, `{"NAME": {settings}}` (any name of
    /// `sskd_losses::method_names`; settings left out keep the method's published defaults).
    #[config(default = "MethodConfig::default()")]
    pub method: MethodConfig,
    /// Number of classes.
    #[config(default = 100)]
    pub num_classes: usize,
    /// Stage 1 (teacher, cross-entropy).
    #[config(default = "StageConfig::new(240, 0.05, vec![150, 180, 210])")]
    pub teacher_stage: StageConfig,
    /// Stage 2 (teacher SS head on the frozen backbone).
    #[config(default = "StageConfig::new(60, 0.05, vec![30, 45])")]
    pub head_stage: StageConfig,
    /// Stage 3 (student); lr 0.01 for MobileNetV2 / ShuffleV1 / ShuffleV2 students.
    #[config(default = "StageConfig::new(240, 0.05, vec![150, 180, 210])")]
    pub student_stage: StageConfig,
    /// Training batch in source images (×4 rows with rotations).
    #[config(default = 64)]
    pub batch_size: usize,
    /// Test batch in source images.
    #[config(default = 100)]
    pub test_batch_size: usize,
    /// SGD momentum (no dampening, no Nesterov).
    #[config(default = 0.9)]
    pub momentum: f64,
    /// Weight decay on every parameter (L2, added to the gradient).
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    /// Seed of initialisation, sample order and augmentation.
    #[config(default = 0)]
    pub seed: u64,
    /// A checkpoint every this many epochs (and after the last).
    #[config(default = 10)]
    pub checkpoint_every: usize,
    /// Also a checkpoint inside an epoch after every this many of its steps (0: none).
    #[config(default = 0)]
    pub checkpoint_every_steps: usize,
    /// Also a checkpoint inside an epoch once this many minutes of training have passed since
    /// the last one (0: none).
    #[config(default = 0.0)]
    pub checkpoint_every_minutes: f64,
}

impl StageConfig {
    /// Checks the stage `field` of a config: positive epochs and learning rate, increasing
    /// milestones. The error names the field.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let invalid = |name: &str, reason: String| ConfigError::Invalid {
            field: format!("{field}.{name}"),
            reason,
        };
        if self.epochs == 0 {
            return Err(invalid(
                "epochs",
                "must be positive: a stage of zero epochs would leave an untrained model and \
                 no best checkpoint for the next stage"
                    .to_string(),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(invalid("lr", format!("must be positive, got {}", self.lr)));
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            let reason = format!("must increase: {:?}", self.milestones);
            return Err(invalid("milestones", reason));
        }
        Ok(())
    }
}

impl ExperimentConfig {
    /// Checks values no type can: known architectures and method, positive sizes, increasing
    /// milestones. The error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            field: field.to_string(),
            reason,
        };
        let names = sskd_models::model_names();
        for (field, arch) in [("teacher", &self.teacher), ("student", &self.student)] {
            if !names.contains(&arch.as_str()) {
                return Err(ConfigError::UnknownArchitecture {
                    field,
                    name: arch.clone(),
                    known: names.to_vec(),
                });
            }
        }
        for (field, value) in [
            ("num_classes", self.num_classes),
            ("batch_size", self.batch_size),
            ("test_batch_size", self.test_batch_size),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be positive".to_string()));
            }
        }
        for (field, stage) in [
            ("teacher_stage", &self.teacher_stage),
            ("head_stage", &self.head_stage),
            ("student_stage", &self.student_stage),
        ] {
            stage.validate(field)?;
        }
        let minutes = self.checkpoint_every_minutes;
        if !(minutes >= 0.0 && minutes.is_finite()) {
            let reason = format!("must be 0 (none) or a positive number, got {minutes}");
            return Err(invalid("checkpoint_every_minutes", reason));
        }
        self.method.validate().map_err(ConfigError::Method)
    }
}

impl Settings for ExperimentConfig {
    /// The fields of `settings` over this config, field by field; the `method` field through
    /// [`MethodConfig`]'s own settings (the same method keeps its settings, another starts from
    /// its published ones).
    fn with_settings(&self, settings: &Value) -> Result<Self, SettingsError> {
        let mut fields = object(settings)?.clone();
        let method = match fields.remove("method") {
            Some(written) => self
                .method
                .with_settings(&written)
                .map_err(|e| e.in_field("method"))?,
            None => self.method.clone(),
        };
        let mut config = merge_fields(self, &Value::Object(fields))?;
        config.method = method;
        Ok(config)
    }
}

/// A config file: its `teacher` and `student` pick `defaults`, its other fields override them.
pub fn load_experiment(
    path: &Path,
    defaults: fn(&str, &str) -> ExperimentConfig,
) -> Result<ExperimentConfig, ConfigError> {
    let json = read_json(path)?;
    let arch = |field: &'static str| {
        json.get(field)
            .and_then(|v| v.as_str())
            .ok_or(ConfigError::Missing {
                path: path.to_path_buf(),
                field,
            })
    };
    let config = load_overrides(path, defaults(arch("teacher")?, arch("student")?))?;
    config.validate().map_err(|e| e.in_file(path))?;
    Ok(config)
}

/// The field of [`ExperimentConfig`] holding `stage`'s settings (`teacher_stage`, ...); none
/// for a method's pre-training, which the method's settings drive.
pub fn stage_field(stage: Stage) -> Option<&'static str> {
    match stage {
        Stage::Teacher => Some("teacher_stage"),
        Stage::Head => Some("head_stage"),
        Stage::Student => Some("student_stage"),
        Stage::Pretraining => None,
    }
}

/// The student learning rate of the SSKD and CRD scripts, from the architecture table
/// ([`sskd_models::registry::student_lr`]: 0.01 for MobileNetV2 and the ShuffleNets, 0.05
/// otherwise and for a name the table does not have).
pub fn default_student_lr(student: &str) -> f64 {
    sskd_models::registry::student_lr(student).unwrap_or(sskd_models::registry::STUDENT_LR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_sskd_code_defaults() {
        let config = ExperimentConfig::new("wrn_40_2".into(), "wrn_16_2".into());
        assert_eq!(config.student_stage.schedule().lr(150), 0.05 * 0.1);
        assert_eq!(config.head_stage.schedule().lr(45), 0.05 * 0.1 * 0.1);
        let sskd_losses::MethodConfig::Sskd(sskd) = &config.method else {
            panic!("the default method is SSKD: {:?}", config.method)
        };
        assert_eq!((config.batch_size, sskd.ss_weight), (64, 10.0));
        config.validate().unwrap();
        let bad = ExperimentConfig::new("wrn_40_2".into(), "wrn_16_3".into());
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("field `student`"), "{error}");
    }

    #[test]
    fn a_stage_of_zero_epochs_is_rejected() {
        let mut config = ExperimentConfig::new("wrn_40_2".into(), "wrn_16_2".into());
        config.teacher_stage.epochs = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("field `teacher_stage.epochs` must be positive"),
            "{error}"
        );
    }
}
