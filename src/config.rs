//! Config files that override a method's defaults field by field.

use std::path::Path;

use burn::config::Config;
use serde_json::Value;

/// Reads the JSON object in `path` and applies its fields over `defaults`: a field not in the
/// file keeps its default; an unknown field, or a value of the wrong type, is an error naming the
/// file and the field.
pub fn load_overrides<C: Config>(path: &Path, defaults: C) -> Result<C, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let overrides: Value = serde_json::from_str(&text)
        .map_err(|e| format!("config {} is not valid JSON: {e}", path.display()))?;
    apply_overrides(defaults, &overrides).map_err(|e| format!("config {}: {e}", path.display()))
}

/// Applies the fields of the JSON object `overrides` over `defaults` (see [`load_overrides`]);
/// nested objects override nested configs field by field.
pub fn apply_overrides<C: Config>(defaults: C, overrides: &Value) -> Result<C, String> {
    let Value::Object(fields) = overrides else {
        return Err("expected a JSON object of config fields".to_string());
    };
    let mut merged = serde_json::to_value(&defaults).map_err(|e| e.to_string())?;
    for (field, value) in fields {
        merge_field(&mut merged, field, value)?;
        serde_json::from_value::<C>(merged.clone()).map_err(|e| format!("field `{field}`: {e}"))?;
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

/// Sets `path` (`a.b.c`) of `config` to the JSON text `value` (a bare word is a string): the
/// command-line form `--set student_stage.epochs=1`.
pub fn apply_assignment<C: Config>(config: C, assignment: &str) -> Result<C, String> {
    let (path, text) = assignment
        .split_once('=')
        .ok_or_else(|| format!("`{assignment}`: expected FIELD=VALUE"))?;
    let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()));
    let mut nested = value;
    for key in path.rsplit('.') {
        nested = serde_json::json!({ key: nested });
    }
    apply_overrides(config, &nested)
}

/// Merges `value` into `target[field]`: objects key by key (each key must exist), anything
/// else replaces. A one-of written `{"VARIANT": {...}}` (the `method`) is the exception: a
/// variant other than the current one replaces it, and the type fills in its defaults.
fn merge_field(target: &mut Value, field: &str, value: &Value) -> Result<(), String> {
    let known: Vec<String> = target
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if !known.iter().any(|k| k == field) && is_one_of(target) && value.is_object() {
        *target = serde_json::json!({ field: value });
        return Ok(());
    }
    if !known.iter().any(|k| k == field) {
        return Err(format!(
            "unknown field `{field}`; known fields: {}",
            known.join(", ")
        ));
    }
    let slot = &mut target[field];
    match (value, slot.is_object()) {
        (Value::Object(inner), true) => {
            for (key, inner_value) in inner {
                merge_field(slot, key, inner_value).map_err(|e| format!("in `{field}`: {e}"))?;
            }
        }
        _ => *slot = value.clone(),
    }
    Ok(())
}

/// Whether `value` is written like a one-of: an object with one field whose value is an
/// object (`{"sskd": {...}}`); no struct of the configs has that shape.
fn is_one_of(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|fields| fields.len() == 1 && fields.values().all(Value::is_object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sskd_losses::{MethodConfig, SskdConfig};

    #[test]
    fn fields_override_defaults_and_bad_fields_are_named() {
        let config =
            apply_overrides(SskdConfig::new(), &serde_json::json!({"ss_weight": 3.0})).unwrap();
        assert_eq!((config.ss_weight, config.tf_weight), (3.0, 2.7));
        let error =
            apply_overrides(SskdConfig::new(), &serde_json::json!({"ratio_sss": 1.0})).unwrap_err();
        assert!(
            error.contains("unknown field `ratio_sss`") && error.contains("ratio_ss"),
            "{error}"
        );
        let error =
            apply_overrides(SskdConfig::new(), &serde_json::json!({"tf_weight": "x"})).unwrap_err();
        assert!(error.contains("field `tf_weight`"), "{error}");
    }

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
        assert!(
            error.contains("unknown field `betta`") && error.contains("warmup_epochs"),
            "{error}"
        );
        let error = apply_assignment(config.clone(), "method.crd.nce_kk=2").unwrap_err();
        assert!(
            error.contains("unknown setting `nce_kk`") && error.contains("nce_k"),
            "{error}"
        );
        let error = apply_assignment(config.clone(), "method=kdd").unwrap_err();
        assert!(error.contains("unknown method `kdd`"), "{error}");
        let error = apply_assignment(config.clone(), "student_stage.epoch=3").unwrap_err();
        assert!(
            error.contains("unknown field `epoch`") && error.contains("student_stage"),
            "{error}"
        );
        let error = apply_assignment(config, "student_stage.epochs=-1").unwrap_err();
        assert!(error.contains("student_stage"), "{error}");
    }
}
