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

/// Applies the fields of the JSON object `overrides` over `defaults` (see [`load_overrides`]).
pub fn apply_overrides<C: Config>(defaults: C, overrides: &Value) -> Result<C, String> {
    let Value::Object(fields) = overrides else {
        return Err("expected a JSON object of config fields".to_string());
    };
    let mut merged = serde_json::to_value(&defaults).map_err(|e| e.to_string())?;
    let known: Vec<String> = merged
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for (field, value) in fields {
        if !known.contains(field) {
            return Err(format!(
                "unknown field `{field}`; known fields: {}",
                known.join(", ")
            ));
        }
        merged[field] = value.clone();
        serde_json::from_value::<C>(merged.clone()).map_err(|e| format!("field `{field}`: {e}"))?;
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sskd_losses::SskdConfig;

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
}
