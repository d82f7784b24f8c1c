//! The names RepDistiller's `train_student.py` gives each method's own modules, against the
//! paths of the same tensors in a [`Method`](crate::Method): how a method's state is read
//! from, and written back to, a reference run's files.
//!
//! | method | RepDistiller | here |
//! |---|---|---|
//! | hint | `regress_s.{conv,bn}.*` (`ConvReg`) | `method.regressor.{conv,bn}.*` |
//! | correlation, crd | `embed_s.linear.*`, `embed_t.linear.*` | `method.embed_s.*`, `method.embed_t.*` |
//! | vid | `criterion_kd.N.regressor.{0,2,4}.weight`, `criterion_kd.N.log_scale` | `method.layers.N.conv{1,2,3}.weight`, `method.layers.N.log_scale` |
//! | abound | `connector.connectors.N.{conv,bn}.*` | `method.connectors.N.{conv,bn}.*` |
//! | factor | `paraphraser.{encoder,decoder}.{0,3,6}.*`, `translator.encoder.{0,3,6}.*` (convs), `.{1,4,7}.*` (BN) | `method.paraphraser.{encoder,decoder}.{0,1,2}.*`, `method.translator.{0,1,2}.{conv,bn}.*` |
//! | crd | `contrast.memory_v1`, `contrast.memory_v2`, `contrast.params` (`[K, T, Z_v1, Z_v2, m]`) | `method.memory_student`, `method.memory_teacher`, `method.normalizers` (`[Z_v1, Z_v2]`) |

use burn::tensor::TensorData;

use crate::{LossError, MethodConfig};

/// `(RepDistiller key prefix, module path prefix)`; a `*` segment stands for one number, the
/// same on both sides.
type Rule = (&'static str, &'static str);

const HINT: &[Rule] = &[("regress_s.", "method.regressor.")];
const EMBEDDINGS: &[Rule] = &[
    ("embed_s.linear.", "method.embed_s."),
    ("embed_t.linear.", "method.embed_t."),
];
const VID: &[Rule] = &[
    ("criterion_kd.*.regressor.0.", "method.layers.*.conv1."),
    ("criterion_kd.*.regressor.2.", "method.layers.*.conv2."),
    ("criterion_kd.*.regressor.4.", "method.layers.*.conv3."),
    ("criterion_kd.*.log_scale", "method.layers.*.log_scale"),
];
const ABOUND: &[Rule] = &[("connector.connectors.", "method.connectors.")];
const FACTOR: &[Rule] = &[
    ("paraphraser.encoder.0.", "method.paraphraser.encoder.0."),
    ("paraphraser.encoder.3.", "method.paraphraser.encoder.1."),
    ("paraphraser.encoder.6.", "method.paraphraser.encoder.2."),
    ("paraphraser.decoder.0.", "method.paraphraser.decoder.0."),
    ("paraphraser.decoder.3.", "method.paraphraser.decoder.1."),
    ("paraphraser.decoder.6.", "method.paraphraser.decoder.2."),
    ("translator.encoder.0.", "method.translator.0.conv."),
    ("translator.encoder.1.", "method.translator.0.bn."),
    ("translator.encoder.3.", "method.translator.1.conv."),
    ("translator.encoder.4.", "method.translator.1.bn."),
    ("translator.encoder.6.", "method.translator.2.conv."),
    ("translator.encoder.7.", "method.translator.2.bn."),
];
const CRD: &[Rule] = &[
    ("embed_s.linear.", "method.embed_s."),
    ("embed_t.linear.", "method.embed_t."),
    ("contrast.memory_v1", "method.memory_student"),
    ("contrast.memory_v2", "method.memory_teacher"),
    (NORMALIZERS, "method.normalizers"),
];

/// `contrast.params` as read here: its `[Z_v1, Z_v2]` alone.
const NORMALIZERS: &str = "contrast.normalizers";
/// RepDistiller's buffer `[K, T, Z_v1, Z_v2, momentum]` of `ContrastMemory`.
const CONTRAST_PARAMS: &str = "contrast.params";

/// RepDistiller's names of one method's modules ([module docs](self)).
#[derive(Debug, Clone, Copy)]
pub struct TorchNames {
    rules: &'static [Rule],
}

impl TorchNames {
    /// The names of `method`'s modules (none for a method without trainable parts).
    pub fn of(method: &MethodConfig) -> Self {
        let rules = match method {
            MethodConfig::FitNet(_) => HINT,
            MethodConfig::Correlation(_) => EMBEDDINGS,
            MethodConfig::Vid(_) => VID,
            MethodConfig::ActivationBoundary(_) => ABOUND,
            MethodConfig::FactorTransfer(_) => FACTOR,
            MethodConfig::Crd(_) => CRD,
            _ => &[],
        };
        Self { rules }
    }

    /// The module path (PyTorch leaf names) of RepDistiller's `key`; `None` for a key of no
    /// module of the method.
    pub fn module_path(&self, key: &str) -> Option<String> {
        self.rules
            .iter()
            .find_map(|(file, module)| rewrite(key, file, module))
    }

    /// RepDistiller's key of a module path.
    pub fn file_key(&self, module_path: &str) -> Option<String> {
        self.rules
            .iter()
            .find_map(|(file, module)| rewrite(module_path, module, file))
    }
}

/// `text` with prefix `from` replaced by `to`, a `*` segment carrying its number across.
fn rewrite(text: &str, from: &str, to: &str) -> Option<String> {
    let Some((before, after)) = from.split_once('*') else {
        return text.strip_prefix(from).map(|rest| format!("{to}{rest}"));
    };
    let rest = text.strip_prefix(before)?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (number, rest) = rest.split_at(digits);
    let rest = rest.strip_prefix(after)?;
    Some(format!("{}{rest}", to.replacen('*', number, 1)))
}

/// RepDistiller's tensors of `method`'s state as read here: CRD's `contrast.params` becomes its
/// two normalisation constants, after checking that its temperature and momentum are the
/// method's (a mismatch names the setting to pass).
pub fn from_repdistiller(
    method: &MethodConfig,
    tensors: &mut [(String, TensorData)],
) -> Result<(), LossError> {
    let MethodConfig::Crd(crd) = method else {
        return Ok(());
    };
    let Some((key, data)) = tensors.iter_mut().find(|(key, _)| key == CONTRAST_PARAMS) else {
        return Ok(());
    };
    let values = floats(data, 5)?;
    for (index, name, setting) in [(1, "nce_t", crd.term.nce_t), (4, "nce_m", crd.term.nce_m)] {
        let stored = values[index];
        if (stored - setting).abs() > 1e-6 * setting.abs().max(1.0) {
            return Err(bad_params(format!(
                "holds {name} = {stored}, the method's setting is {setting}: pass \
                 --set method.crd.{name}={stored}"
            )));
        }
    }
    *key = NORMALIZERS.to_string();
    *data = TensorData::new(values[2..4].to_vec(), [2]).convert_dtype(data.dtype);
    Ok(())
}

/// The inverse of [`from_repdistiller`]: CRD's normalisation constants written back as
/// `contrast.params` `[K, T, Z_v1, Z_v2, m]` (K, T and m the method's settings).
pub fn to_repdistiller(
    method: &MethodConfig,
    tensors: &mut [(String, TensorData)],
) -> Result<(), LossError> {
    let MethodConfig::Crd(crd) = method else {
        return Ok(());
    };
    let Some((key, data)) = tensors.iter_mut().find(|(key, _)| key == NORMALIZERS) else {
        return Ok(());
    };
    let normalizers = floats(data, 2)?;
    let settings = &crd.term;
    let params = vec![
        settings.nce_k as f64,
        settings.nce_t,
        normalizers[0],
        normalizers[1],
        settings.nce_m,
    ];
    *key = CONTRAST_PARAMS.to_string();
    *data = TensorData::new(params, [5]).convert_dtype(data.dtype);
    Ok(())
}

fn bad_params(message: String) -> LossError {
    LossError::BadInput {
        method: "crd",
        message: format!("{CONTRAST_PARAMS} {message}"),
    }
}

/// The `count` values of a float tensor.
fn floats(data: &TensorData, count: usize) -> Result<Vec<f64>, LossError> {
    let values = data
        .clone()
        .convert::<f64>()
        .into_vec::<f64>()
        .map_err(|e| bad_params(format!("is not a float tensor ({e:?})")))?;
    if values.len() != count {
        return Err(bad_params(format!(
            "has {} values, expected {count}",
            values.len()
        )));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        let vid = TorchNames::of(&MethodConfig::published("vid").unwrap());
        let path = vid.module_path("criterion_kd.12.regressor.2.weight");
        assert_eq!(path.as_deref(), Some("method.layers.12.conv2.weight"));
        let key = vid.file_key("method.layers.12.log_scale");
        assert_eq!(key.as_deref(), Some("criterion_kd.12.log_scale"));
        assert_eq!(vid.module_path("criterion_kd.x.log_scale"), None);
        let factor = TorchNames::of(&MethodConfig::published("factor").unwrap());
        let path = factor.module_path("translator.encoder.4.running_var");
        assert_eq!(path.as_deref(), Some("method.translator.1.bn.running_var"));
        let kd = TorchNames::of(&MethodConfig::published("kd").unwrap());
        assert_eq!(kd.module_path("regress_s.conv.weight"), None);
    }

    #[test]
    fn crd_params_round_trip_and_mismatches_name_the_setting() {
        let crd = MethodConfig::published("crd").unwrap();
        let params = TensorData::new(vec![16384.0f32, 0.07, 12.5, 7.25, 0.5], [5]);
        let mut tensors = vec![(CONTRAST_PARAMS.to_string(), params)];
        from_repdistiller(&crd, &mut tensors).unwrap();
        assert_eq!(tensors[0].0, NORMALIZERS);
        assert_eq!(tensors[0].1.to_vec::<f32>().unwrap(), vec![12.5, 7.25]);
        to_repdistiller(&crd, &mut tensors).unwrap();
        let values = tensors[0].1.to_vec::<f32>().unwrap();
        assert_eq!(
            (tensors[0].0.as_str(), values[2], values[4]),
            (CONTRAST_PARAMS, 12.5, 0.5)
        );
        let hot = TensorData::new(vec![16384.0f32, 0.2, -1.0, -1.0, 0.5], [5]);
        let mut tensors = vec![(CONTRAST_PARAMS.to_string(), hot)];
        let error = from_repdistiller(&crd, &mut tensors)
            .unwrap_err()
            .to_string();
        assert!(error.contains("--set method.crd.nce_t=0.2"), "{error}");
    }
}
