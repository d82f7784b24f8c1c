//! Every method by the name the CRD / SSKD scripts use, from one table: the name (and its
//! aliases), the config type and its published defaults. The table makes [`Method`] (any
//! method, as one module), [`MethodConfig`] (any method's settings, as stored in an experiment
//! config) and the names.
//!
//! Adding a method: its file (a [`Distiller`] with a config implementing [`DistillerConfig`],
//! or, for a baseline combined with CE and KD, a [`FeatureTerm`](crate::FeatureTerm) with a
//! [`TermConfig`](crate::TermConfig)), its exports in `lib.rs`, and one row of `methods!` below.

use burn::module::{Module, ModuleDisplay};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{self, Settings, SettingsError};
use crate::{
    ActivationBoundaryConfig, Attention, BaselineConfig, CorrelationConfig, CrdConfig,
    DistillInputs, Distiller, Dkd, DkdConfig, FactorTransferConfig, FitNetConfig, Fsp, Kd,
    KdConfig, Kdsvd, LossError, LossTerms, MethodContext, Needs, Nst, Pkt, Pretraining, Rkd,
    Similarity, Sskd, SskdConfig, TermConfig, Vanilla, VanillaConfig, VidConfig, WithCeKd,
};

/// A method's settings, which build the method for the networks of a run.
pub trait DistillerConfig {
    /// The method they build on backend `B`.
    type Method<B: Backend>: Distiller<B> + Module<B> + ModuleDisplay;
    /// The method for networks of `context`'s shapes, on `device`.
    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Self::Method<B>, LossError>;
    /// Checks the settings that do not depend on the networks (weights, temperatures, ratios).
    fn validate(&self) -> Result<(), LossError>;

    /// Whether the method learns from a teacher (plain training does not).
    const USES_TEACHER: bool = true;

    /// Whether the method reads logits alone, so its settings build it without the networks'
    /// shapes.
    const LOGITS_ONLY: bool = false;
}

/// Logit methods need nothing of the run: their configs' own `init` builds them.
macro_rules! logit_methods {
    ($($config:ty => $method:ty: $uses_teacher:literal),* $(,)?) => {$(
        impl DistillerConfig for $config {
            type Method<B: Backend> = $method;

            fn init<B: Backend>(
                &self,
                _context: &MethodContext,
                _device: &B::Device,
            ) -> Result<$method, LossError> {
                <$config>::init(self)
            }

            fn validate(&self) -> Result<(), LossError> {
                <$config>::init(self).map(|_| ())
            }

            const USES_TEACHER: bool = $uses_teacher;
            const LOGITS_ONLY: bool = true;
        }
    )*};
}

logit_methods!(
    SskdConfig => Sskd: true,
    KdConfig => Kd: true,
    DkdConfig => Dkd: true,
    VanillaConfig => Vanilla: false,
);

impl<S: TermConfig> DistillerConfig for BaselineConfig<S> {
    type Method<B: Backend> = WithCeKd<B, S::Term<B>>;

    fn init<B: Backend>(
        &self,
        context: &MethodContext,
        device: &B::Device,
    ) -> Result<Self::Method<B>, LossError> {
        BaselineConfig::init(self, context, device)
    }

    fn validate(&self) -> Result<(), LossError> {
        self.weights.logit_terms().map(|_| ())
    }
}

/// Terms without trainable parts are their own settings (`p` of attention transfer, the two
/// weights of RKD; none for SP, PKT, FSP and NST).
macro_rules! plain_terms {
    ($($term:ty),* $(,)?) => {$(
        impl TermConfig for $term {
            type Term<B: Backend> = $term;

            fn init<B: Backend>(
                &self,
                _context: &MethodContext,
                _device: &B::Device,
            ) -> Result<Self::Term<B>, LossError> {
                Ok(self.clone())
            }
        }
    )*};
}

plain_terms!(Attention, Rkd, Similarity, Pkt, Fsp, Nst, Kdsvd);

macro_rules! methods {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident: $name:literal $(| $alias:literal)* => $config:ty = $default:expr;
    )*) => {
        /// Any method of the crate, as one module (its trainable parts train with the student).
        #[allow(clippy::large_enum_variant)]
        #[derive(Module, Debug)]
        pub enum Method<B: Backend> {
            $($(#[doc = $doc])* $variant(<$config as DistillerConfig>::Method<B>),)*
        }

        /// A method and its settings, written `{"NAME": {SETTING: VALUE, …}}` in a config
        /// (`{"dkd": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_epochs": 20, …}}`).
        /// Reading one, a bare name (`"dkd"`) is the method with its published defaults, and
        /// the settings given override those defaults one by one; an unknown setting is an
        /// error naming it.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub enum MethodConfig {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant($config),)*
        }

        /// Names [`create_method`] accepts, in the table's order.
        const NAMES: &[&str] = &[$($name),*];

        impl MethodConfig {
            /// The method's name in the registry.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)*
                }
            }

            /// The method called `name` (or one of its aliases) with its published defaults.
            pub fn published(name: &str) -> Result<Self, LossError> {
                match name {
                    $($name $(| $alias)* => Ok(Self::$variant($default)),)*
                    _ => Err(unknown_method(name)),
                }
            }

            /// `self` with `fields` (an object of its settings: `{"beta": 2.0}`) over its own,
            /// field by field ([`settings::merge_fields`]).
            pub fn with_fields(&self, fields: &Value) -> Result<Self, SettingsError> {
                match self {
                    $(Self::$variant(config) => {
                        settings::merge_fields(config, fields).map(Self::$variant)
                    })*
                }
            }

            /// Whether the method learns from a teacher (plain training does not: a stage of
            /// it trains the student as stage 1 trains a teacher).
            pub fn uses_teacher(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$config as DistillerConfig>::USES_TEACHER,)*
                }
            }

            /// Whether the method reads logits alone (its settings build it without the
            /// networks' shapes).
            pub fn logits_only(&self) -> bool {
                match self {
                    $(Self::$variant(_) => <$config as DistillerConfig>::LOGITS_ONLY,)*
                }
            }

            /// Checks the settings that do not depend on the networks.
            pub fn validate(&self) -> Result<(), LossError> {
                match self {
                    $(Self::$variant(config) => DistillerConfig::validate(config),)*
                }
            }

            /// The method for networks of `context`'s shapes, on `device`.
            pub fn init<B: Backend>(
                &self,
                context: &MethodContext,
                device: &B::Device,
            ) -> Result<Method<B>, LossError> {
                Ok(match self {
                    $(Self::$variant(config) => {
                        Method::$variant(DistillerConfig::init::<B>(config, context, device)?)
                    })*
                })
            }
        }

        impl<B: Backend> Distiller<B> for Method<B> {
            fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(method) => Distiller::<B>::name(method),)*
                }
            }

            fn needs(&self) -> Needs {
                match self {
                    $(Self::$variant(method) => Distiller::<B>::needs(method),)*
                }
            }

            fn loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
                match self {
                    $(Self::$variant(method) => method.loss(inputs),)*
                }
            }

            fn pretraining(&self) -> Option<Pretraining> {
                match self {
                    $(Self::$variant(method) => Distiller::<B>::pretraining(method),)*
                }
            }

            fn pretrain_loss(&self, inputs: &DistillInputs<B>) -> Result<LossTerms<B>, LossError> {
                match self {
                    $(Self::$variant(method) => method.pretrain_loss(inputs),)*
                }
            }
        }
    };
}

methods! {
    /// SSKD.
    Sskd: "sskd" => SskdConfig = SskdConfig::new();
    /// KD.
    Kd: "kd" => KdConfig = KdConfig::new();
    /// KD with logit standardisation.
    KdLs: "kd_ls" => KdConfig = KdConfig::new().with_logit_standardization(true);
    /// Decoupled KD.
    Dkd: "dkd" => DkdConfig = DkdConfig::new();
    /// FitNet hints (β 100).
    FitNet: "hint" | "fitnet" => BaselineConfig<FitNetConfig> =
        BaselineConfig::new(100.0, FitNetConfig::new());
    /// Attention transfer (β 1000).
    Attention: "attention" | "at" => BaselineConfig<Attention> =
        BaselineConfig::new(1000.0, Attention::default());
    /// Similarity preserving (β 3000).
    Similarity: "similarity" | "sp" => BaselineConfig<Similarity> =
        BaselineConfig::new(3000.0, Similarity);
    /// Correlation congruence (β 0.02).
    Correlation: "correlation" | "cc" => BaselineConfig<CorrelationConfig> =
        BaselineConfig::new(0.02, CorrelationConfig::new());
    /// Variational information distillation (β 1).
    Vid: "vid" => BaselineConfig<VidConfig> = BaselineConfig::new(1.0, VidConfig::new());
    /// Relational KD (β 1).
    Rkd: "rkd" => BaselineConfig<Rkd> = BaselineConfig::new(1.0, Rkd::default());
    /// Probabilistic knowledge transfer (β 30000).
    Pkt: "pkt" => BaselineConfig<Pkt> = BaselineConfig::new(30000.0, Pkt);
    /// Activation boundaries (its term drives the pre-training stage; β 0 in the main one).
    ActivationBoundary: "abound" | "ab" => BaselineConfig<ActivationBoundaryConfig> =
        BaselineConfig::new(0.0, ActivationBoundaryConfig::new());
    /// Factor transfer (β 200).
    FactorTransfer: "factor" | "ft" => BaselineConfig<FactorTransferConfig> =
        BaselineConfig::new(200.0, FactorTransferConfig::new());
    /// Flow of solution procedure (its term drives the pre-training stage; β 0 in the main one).
    Fsp: "fsp" => BaselineConfig<Fsp> = BaselineConfig::new(0.0, Fsp::default());
    /// Neuron selectivity transfer (β 50).
    Nst: "nst" => BaselineConfig<Nst> = BaselineConfig::new(50.0, Nst);
    /// Contrastive representation distillation (β 0.8).
    Crd: "crd" => BaselineConfig<CrdConfig> = BaselineConfig::new(0.8, CrdConfig::new());
    /// KDSVD (RepDistiller publishes no β for it: 1).
    Kdsvd: "kdsvd" => BaselineConfig<Kdsvd> = BaselineConfig::new(1.0, Kdsvd::default());
    /// Plain training: cross-entropy alone, no teacher (mdistiller's `NONE`).
    Vanilla: "vanilla" | "none" => VanillaConfig = VanillaConfig::new();
}

impl Default for MethodConfig {
    /// SSKD with the paper's settings.
    fn default() -> Self {
        Self::Sskd(SskdConfig::new())
    }
}

impl burn::config::Config for MethodConfig {}

impl<'de> Deserialize<'de> for MethodConfig {
    /// A name, or `{"NAME": {settings}}`: the method's published defaults, the settings over
    /// them.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = Value::deserialize(deserializer)?;
        let (name, settings) = written_method(&written).map_err(serde::de::Error::custom)?;
        let published = MethodConfig::published(name).map_err(serde::de::Error::custom)?;
        published
            .settings_over(settings)
            .map_err(serde::de::Error::custom)
    }
}

impl Settings for MethodConfig {
    /// `written` is a name (`"kd"`: that method with its published defaults) or
    /// `{"NAME": {settings}}`: the settings over this method's current ones when NAME is this
    /// method, else over NAME's published defaults.
    fn with_settings(&self, written: &Value) -> Result<Self, SettingsError> {
        let (name, settings) = written_method(written)?;
        let named = MethodConfig::published(name)?;
        match settings {
            None => Ok(named),
            Some(_) if named.name() == self.name() => self.settings_over(settings),
            Some(_) => named.settings_over(settings),
        }
    }
}

impl MethodConfig {
    /// `self` with `settings` (the object of `{"NAME": {settings}}`) over its own; an unknown
    /// setting is an error naming it and the method's settings.
    fn settings_over(&self, settings: Option<&Value>) -> Result<Self, SettingsError> {
        let Some(fields) = settings else {
            return Ok(self.clone());
        };
        let name = self.name();
        self.with_fields(fields).map_err(|error| match error {
            SettingsError::UnknownField { field, known } => unknown_setting(name, &field, &known),
            other => other.in_field(name),
        })
    }
}

/// The name and the settings of a method as written: `"NAME"` or `{"NAME": {settings}}`.
fn written_method(written: &Value) -> Result<(&str, Option<&Value>), SettingsError> {
    match written {
        Value::String(name) => Ok((name, None)),
        Value::Object(fields) if fields.len() == 1 => {
            let (name, settings) = fields.iter().next().expect("one field");
            Ok((name, Some(settings)))
        }
        _ => Err(LossError::BadInput {
            method: "registry",
            message: format!("expected a method name or {{\"NAME\": {{settings}}}}, got {written}"),
        }
        .into()),
    }
}

fn unknown_setting(method: &str, setting: &str, known: &[String]) -> SettingsError {
    LossError::BadInput {
        method: "registry",
        message: format!(
            "method `{method}`: unknown setting `{setting}`; its settings: {}",
            known.join(", ")
        ),
    }
    .into()
}

fn unknown_method(name: &str) -> LossError {
    LossError::BadInput {
        method: "registry",
        message: format!(
            "unknown method `{name}`; known methods: {}",
            NAMES.join(", ")
        ),
    }
}

/// The registered method names (aliases aside).
pub fn method_names() -> &'static [&'static str] {
    NAMES
}

/// The method called `name` with its published defaults (see [`MethodConfig`]; β: hint 100,
/// attention 1000, similarity 3000, correlation 0.02, vid 1, rkd 1, pkt 30000, factor 200,
/// nst 50, crd 0.8; `abound` and `fsp` train their term in a pre-training stage and have β = 0
/// in the main stage; the baselines use the SSKD paper's `0.1·CE + 0.9·KD + β·L`).
pub fn create_method<B: Backend>(
    name: &str,
    context: &MethodContext,
    device: &B::Device,
) -> Result<Method<B>, LossError> {
    MethodConfig::published(name)?.init(context, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeatureShapes;
    use burn::backend::Flex;

    fn context() -> MethodContext {
        let maps = vec![[16, 32, 32], [16, 32, 32], [32, 16, 16], [64, 8, 8]];
        let wide = vec![[16, 32, 32], [32, 32, 32], [64, 16, 16], [128, 8, 8]];
        MethodContext {
            student: FeatureShapes {
                maps,
                embedding: 64,
            },
            teacher: FeatureShapes {
                maps: wide,
                embedding: 128,
            },
            n_data: 1000,
            labels: None,
            seed: 0,
        }
    }

    #[test]
    fn every_name_builds_and_unknown_names_are_listed() {
        let device = Default::default();
        for name in method_names() {
            let method = create_method::<Flex>(name, &context(), &device)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!Distiller::<Flex>::name(&method).is_empty());
        }
        let error = create_method::<Flex>("kdd", &context(), &device)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown method `kdd`") && error.contains("crd"),
            "{error}"
        );
    }

    #[test]
    fn every_config_round_trips_through_json() {
        for name in method_names() {
            let config = MethodConfig::published(name).unwrap();
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(json.as_object().unwrap().keys().next().unwrap(), name);
            let read: MethodConfig = serde_json::from_value(json).unwrap();
            assert_eq!(read, config, "{name}");
        }
    }

    #[test]
    fn settings_override_the_published_defaults_one_by_one() {
        let read: MethodConfig = serde_json::from_str(r#"{"dkd": {"beta": 2.0}}"#).unwrap();
        let MethodConfig::Dkd(dkd) = read else {
            panic!("{read:?}")
        };
        assert_eq!((dkd.beta, dkd.alpha, dkd.warmup_epochs), (2.0, 1.0, 20));
        let read: MethodConfig = serde_json::from_str(r#"{"at": {"p": 4.0}}"#).unwrap();
        let MethodConfig::Attention(at) = read else {
            panic!("{read:?}")
        };
        assert_eq!(
            (at.term.p, at.weights.beta, at.weights.ce),
            (4.0, 1000.0, 0.1)
        );
        let read: MethodConfig = serde_json::from_str(r#""crd""#).unwrap();
        assert_eq!(read, MethodConfig::published("crd").unwrap());
        let error = serde_json::from_str::<MethodConfig>(r#"{"crd": {"nce_kk": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown setting `nce_kk`") && error.contains("nce_k"),
            "{error}"
        );
    }

    #[test]
    fn settings_apply_over_the_same_method_and_over_another_s_defaults() {
        let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        let dkd = MethodConfig::published("dkd").unwrap();
        let dkd = dkd
            .with_settings(&json(r#"{"dkd": {"beta": 2.0}}"#))
            .unwrap();
        // The same method: the earlier setting stays.
        let again = dkd
            .with_settings(&json(r#"{"dkd": {"alpha": 3.0}}"#))
            .unwrap();
        let MethodConfig::Dkd(settings) = &again else {
            panic!("{again:?}")
        };
        assert_eq!((settings.alpha, settings.beta), (3.0, 2.0));
        // Another method (an alias too) starts from its published settings.
        let at = again.with_settings(&json(r#"{"at": {"p": 4.0}}"#)).unwrap();
        let expected = serde_json::from_str::<MethodConfig>(r#"{"attention": {"p": 4.0}}"#);
        assert_eq!(at, expected.unwrap());
        assert_eq!(again.with_settings(&json(r#""kd""#)).unwrap().name(), "kd");
        let error = again.with_settings(&json("3")).unwrap_err().to_string();
        assert!(error.contains("expected a method name"), "{error}");
    }
}
