//! What training measures: accuracy counts, evaluations, and the logs of a step and of an
//! epoch. The bottom layer of the crate: it imports nothing else of it.

use sskd_losses::TOTAL;
use std::collections::BTreeMap;

use burn::tensor::{backend::Backend, Int, Tensor};
use serde::{Deserialize, Serialize};

/// Top-1 and top-5 correct counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Samples whose arg-max is the label.
    pub top1: usize,
    /// Samples whose label is among the five highest scores.
    pub top5: usize,
    /// Samples seen.
    pub total: usize,
}

impl Accuracy {
    /// Adds a batch: `logits` `[n, classes]`, `labels` `[n]`.
    pub fn add<B: Backend>(&mut self, logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) {
        let [rows, classes] = logits.dims();
        let target = logits.clone().gather(1, labels.reshape([rows, 1]));
        let above: Vec<i64> = logits
            .greater(target)
            .int()
            .sum_dim(1)
            .reshape([rows])
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap_or_default();
        self.top1 += above.iter().filter(|&&r| r == 0).count();
        self.top5 += above.iter().filter(|&&r| r < 5.min(classes as i64)).count();
        self.total += rows;
    }

    /// Top-1 accuracy in percent.
    pub fn top1_percent(&self) -> f64 {
        100.0 * self.top1 as f64 / self.total.max(1) as f64
    }

    /// Top-5 accuracy in percent.
    pub fn top5_percent(&self) -> f64 {
        100.0 * self.top5 as f64 / self.total.max(1) as f64
    }

    /// The accuracies as an [`Evaluation`] (no SS-head accuracy).
    pub fn evaluation(&self) -> Evaluation {
        Evaluation {
            top1: self.top1_percent(),
            top5: self.top5_percent(),
            ss_top1: None,
        }
    }
}

impl std::ops::AddAssign for Accuracy {
    fn add_assign(&mut self, other: Self) {
        self.top1 += other.top1;
        self.top5 += other.top5;
        self.total += other.total;
    }
}

/// Accuracies of one evaluation, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Top-1 of the classifier (0 when the stage has none).
    pub top1: f64,
    /// Top-5 of the classifier.
    pub top5: f64,
    /// Accuracy of the SS head (stages 2 and 3), when measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ss_top1: Option<f64>,
}

/// The evaluation figure a stage keeps its best epoch by, named as in the metrics log's `test`
/// object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectBy {
    /// Top-1 of the classifier (stages 1 and 3).
    #[default]
    Top1,
    /// Top-5 of the classifier.
    Top5,
    /// Accuracy of the SS head (stage 2).
    SsTop1,
}

impl SelectBy {
    /// The figure's name in the log (`top1`, `top5`, `ss_top1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Top1 => "top1",
            Self::Top5 => "top5",
            Self::SsTop1 => "ss_top1",
        }
    }

    /// The figure as printed (`top-1`, `top-5`, `SS-head accuracy`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Top1 => "top-1",
            Self::Top5 => "top-5",
            Self::SsTop1 => "SS-head accuracy",
        }
    }

    /// The figure in `evaluation` (0 when it was not measured).
    pub fn of(self, evaluation: &Evaluation) -> f64 {
        match self {
            Self::Top1 => evaluation.top1,
            Self::Top5 => evaluation.top5,
            Self::SsTop1 => evaluation.ss_top1.unwrap_or(0.0),
        }
    }
}

/// An epoch and its evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochResult {
    /// The epoch, counted from 1 as everywhere a user sees one: the metrics log's `epoch`, the
    /// checkpoint files `S-e{epoch}.*`, the printed lines and the plots.
    pub epoch: usize,
    /// Its evaluation.
    pub evaluation: Evaluation,
}

/// What one step (or one shard of it) contributes to the epoch's log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepLog {
    /// Each named loss term (unweighted, and `total`), the mean over the step's images.
    pub terms: BTreeMap<String, f64>,
    /// Named counts (e.g. rows kept by SSKD's error ranking), summed over shards.
    pub counts: BTreeMap<String, f64>,
    /// Source images of the step.
    pub images: usize,
    /// Training accuracy (classification stages) or SS-head accuracy (head stage).
    pub accuracy: Accuracy,
}

impl StepLog {
    /// Records the value of `term` (`[1]`), read back from the device.
    pub fn record<B: Backend>(&mut self, name: &str, term: &Tensor<B, 1>) {
        self.terms.insert(name.to_string(), scalar_f64(term));
    }

    /// Records the step's summed loss `loss` (`[1]`) as the term [`TOTAL`].
    pub fn record_total<B: Backend>(&mut self, loss: &Tensor<B, 1>) {
        self.record(TOTAL, loss);
    }

    /// The step's summed loss, `NaN` if none was recorded.
    pub fn total(&self) -> f64 {
        self.terms.get(TOTAL).copied().unwrap_or(f64::NAN)
    }

    /// Adds another shard of the same step whose images are `weight` of the step's.
    pub(crate) fn merge(&mut self, shard: StepLog, weight: f64) {
        accumulate(&mut self.terms, shard.terms, weight);
        accumulate(&mut self.counts, shard.counts, 1.0);
        self.images += shard.images;
        self.accuracy += shard.accuracy;
    }
}

/// Adds `weight ·` each named value of `from` to `into`.
pub(crate) fn accumulate(
    into: &mut BTreeMap<String, f64>,
    from: BTreeMap<String, f64>,
    weight: f64,
) {
    for (name, value) in from {
        *into.entry(name).or_default() += weight * value;
    }
}

/// The single value of `tensor` as `f64`, in full precision whatever its float type
/// (`into_scalar` would pass an `f64` value through the backend's default `f32`).
pub fn scalar_f64<B: Backend>(tensor: &Tensor<B, 1>) -> f64 {
    let data = tensor.clone().into_data();
    let value = data.iter::<f64>().next().unwrap_or(f64::NAN);
    value
}

/// Sees every training step as it finishes (the progress of an epoch), and may pause the
/// epoch after it. `()` sees nothing and never pauses.
pub trait StepObserver {
    /// Step `step` (the whole step, its shards merged) has finished.
    fn step(&mut self, step: &StepLog);

    /// Whether the epoch stops after the step just seen, its remaining batches left for a
    /// later call that starts there: a checkpoint inside the epoch, or a requested stop. The
    /// epoch function then returns the module as the step left it, without the work of an
    /// epoch's end (averaging running statistics over the nodes).
    fn pause(&mut self) -> bool {
        false
    }
}

impl StepObserver for () {
    fn step(&mut self, _: &StepLog) {}
}

/// The running sums of an epoch's steps so far: what an [`EpochReport`] is computed from, and
/// what a checkpoint inside the epoch stores so that the resumed epoch's report is the
/// uninterrupted one's (the same sums in the same order).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochTally {
    /// Steps done.
    pub steps: usize,
    /// Sum of each named loss term (and `total`) over the steps.
    pub terms: BTreeMap<String, f64>,
    /// Sum of each named count over the steps.
    pub counts: BTreeMap<String, f64>,
    /// Source images seen.
    pub images: usize,
    /// Training accuracy counts.
    pub accuracy: Accuracy,
    /// Training seconds of the epoch before the current run of it (a resumed epoch's earlier
    /// part).
    pub earlier_seconds: f64,
}

impl EpochTally {
    /// Adds a finished step.
    pub fn add_step(&mut self, step: &StepLog) {
        accumulate(&mut self.terms, step.terms.clone(), 1.0);
        accumulate(&mut self.counts, step.counts.clone(), 1.0);
        self.images += step.images;
        self.accuracy += step.accuracy;
        self.steps += 1;
    }

    /// The epoch's report: the mean of each term and count over the steps, `seconds` of
    /// training in this run of the epoch added to the earlier ones.
    pub fn report(&self, seconds: f64) -> EpochReport {
        let steps = self.steps.max(1) as f64;
        let mean = |sums: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
            sums.iter().map(|(k, v)| (k.clone(), v / steps)).collect()
        };
        EpochReport {
            terms: mean(&self.terms),
            counts: mean(&self.counts),
            images: self.images,
            seconds: self.earlier_seconds + seconds,
            accuracy: self.accuracy,
            steps: self.steps,
        }
    }
}

/// What a finished epoch hands to its listeners (`crate::listeners`): the one value the
/// metrics log, the progress display, the best record, the checkpoint policy and the plot read.
#[derive(Debug, Clone)]
pub struct EpochSummary {
    /// Stage name.
    pub stage: String,
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Epochs of the stage.
    pub epochs: usize,
    /// Its learning rate.
    pub lr: f64,
    /// What training measured.
    pub report: EpochReport,
    /// The evaluation after it.
    pub evaluation: Evaluation,
    /// The best epoch so far (this one when `improved`).
    pub best: Option<EpochResult>,
    /// Whether this epoch is the new best.
    pub improved: bool,
    /// The figure the best is chosen by.
    pub select_by: SelectBy,
    /// Wall time of the epoch, training and evaluation, in seconds.
    pub seconds: f64,
}

impl EpochSummary {
    /// The epoch and its evaluation.
    pub fn result(&self) -> EpochResult {
        EpochResult {
            epoch: self.epoch,
            evaluation: self.evaluation,
        }
    }
}

/// What an epoch did: mean loss terms (unweighted, and `total`), mean counts, throughput and
/// the training accuracy on the unrotated rows.
#[derive(Debug, Clone, Default)]
pub struct EpochReport {
    /// Mean of each named term over the batches, and `total`.
    pub terms: BTreeMap<String, f64>,
    /// Mean of each named count over the batches.
    pub counts: BTreeMap<String, f64>,
    /// Source images seen.
    pub images: usize,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Training accuracy (classification stages) or SS-head accuracy (head stage).
    pub accuracy: Accuracy,
    /// Training steps (batches).
    pub steps: usize,
}

impl EpochReport {
    /// The report as a JSON object (terms, counts, images, images/s, accuracy).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "terms": self.terms,
            "counts": self.counts,
            "images": self.images,
            "seconds": self.seconds,
            "images_per_second": self.images as f64 / self.seconds.max(1e-9),
            "top1": self.accuracy.top1_percent(),
            "top5": self.accuracy.top5_percent(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn counts_top1_and_top5() {
        let device = Default::default();
        let logits = Tensor::<Flex, 2>::from_floats(
            [
                [0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],
                [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
            ],
            &device,
        );
        let labels = Tensor::<Flex, 1, Int>::from_ints([1, 6], &device);
        let mut accuracy = Accuracy::default();
        accuracy.add(logits, labels);
        assert_eq!((accuracy.top1, accuracy.top5, accuracy.total), (1, 1, 2));
    }

    #[test]
    fn logs_merge_as_weighted_means_and_sums() {
        let shard = |value: f64, images: usize| StepLog {
            terms: BTreeMap::from([("ce".to_string(), value)]),
            counts: BTreeMap::from([("kept".to_string(), images as f64)]),
            images,
            accuracy: Accuracy {
                top1: images,
                top5: images,
                total: images,
            },
        };
        let mut log = StepLog::default();
        log.merge(shard(1.0, 3), 0.75);
        log.merge(shard(3.0, 1), 0.25);
        assert_eq!(log.terms["ce"], 1.5);
        assert_eq!(log.counts["kept"], 4.0);
        assert_eq!(log.images, 4);
        assert_eq!(log.accuracy.total, 4);
    }
}
