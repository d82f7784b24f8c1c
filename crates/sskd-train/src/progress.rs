//! Progress of long jobs on stderr, inside the epoch: in a terminal an `indicatif` bar over the
//! steps (or batches) with images/s, the running loss terms and the ETAs; without one a plain
//! line every [`ProgressConfig::every`] with the same figures, so that a batch job's log shows
//! life; nothing with [`ProgressMode::Off`].
//!
//! [`Meter`] is the progress of one job of known length (an evaluation pass, feature
//! extraction, a data scan); [`StageProgress`] that of a training stage: an [`EpochMeter`] per
//! epoch (a [`StepObserver`] the epoch functions feed), and a lasting line per finished epoch.
//! Figures are formatted only when shown, so a step costs a few additions.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use indicatif::{FormattedDuration, ProgressBar, ProgressStyle};
use sskd_augment::loader::{HostBatch, LoadError};
use sskd_losses::TOTAL;

use crate::listeners::{EpochEnd, EpochListener};
use crate::metrics::{EpochSummary, StepLog, StepObserver};
use crate::TrainError;

/// How a job shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, else lines.
    #[default]
    Auto,
    /// An `indicatif` bar on stderr.
    Bar,
    /// A plain line on stderr every [`ProgressConfig::every`], and one per finished epoch.
    Lines,
    /// Nothing.
    Off,
}

/// How a job shows its progress, and how often a line is printed without a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressConfig {
    /// Bar, lines, or nothing.
    pub mode: ProgressMode,
    /// The interval between two lines in [`ProgressMode::Lines`].
    pub every: Duration,
}

impl Default for ProgressConfig {
    /// [`ProgressMode::Auto`], a line every 30 s.
    fn default() -> Self {
        Self {
            mode: ProgressMode::Auto,
            every: Duration::from_secs(30),
        }
    }
}

impl ProgressConfig {
    /// No progress at all.
    pub fn off() -> Self {
        Self {
            mode: ProgressMode::Off,
            ..Self::default()
        }
    }

    /// Plain lines every `every`, terminal or not.
    pub fn lines(every: Duration) -> Self {
        Self {
            mode: ProgressMode::Lines,
            every,
        }
    }

    /// The mode in effect: [`ProgressMode::Auto`] resolved by whether stderr is a terminal.
    pub fn resolved(&self) -> ProgressMode {
        match self.mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            mode => mode,
        }
    }
}

/// How far a [`Meter`] is: what its figures are computed from.
#[derive(Debug, Clone, Copy)]
pub struct MeterState {
    /// Units done (steps, batches).
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// Images processed.
    pub images: u64,
    /// Time since the job started.
    pub elapsed: Duration,
}

impl MeterState {
    /// Images per second so far.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Time to the end at the pace so far (unknown before the first unit, or without a total).
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        (self.done > 0).then(|| {
            let per_unit = self.elapsed.as_secs_f64() / self.done as f64;
            Duration::from_secs_f64(per_unit * total.saturating_sub(self.done) as f64)
        })
    }

    /// The wall time the whole job takes at the pace so far.
    pub fn projected(&self) -> Option<Duration> {
        self.eta().map(|eta| eta + self.elapsed)
    }
}

/// A duration as `HH:MM:SS` (`Nd HH:MM:SS` past a day).
pub fn clock(duration: Duration) -> String {
    FormattedDuration(duration).to_string()
}

enum Display {
    Bar {
        bar: ProgressBar,
        last_message: Option<Instant>,
    },
    Lines {
        every: Duration,
        last_line: Instant,
    },
    Off,
}

/// The progress of one job of `total` units (steps, batches), shown as its
/// [`ProgressConfig`] says.
pub struct Meter {
    label: String,
    unit: &'static str,
    state: MeterState,
    started: Instant,
    display: Display,
}

/// How often a bar's text is reformatted (its position moves every unit).
const BAR_TEXT_EVERY: Duration = Duration::from_millis(250);

impl Meter {
    /// A job named `label` (`teacher epoch 3/240`, `evaluation`) of `total` `unit`s.
    pub fn new(
        config: &ProgressConfig,
        label: impl Into<String>,
        total: Option<usize>,
        unit: &'static str,
    ) -> Self {
        let label = label.into();
        let total = total.map(|t| t as u64);
        let display = match config.resolved() {
            ProgressMode::Bar => {
                let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
                let template = format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}");
                if let Ok(style) = ProgressStyle::with_template(&template) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_prefix(label.clone());
                Display::Bar {
                    bar,
                    last_message: None,
                }
            }
            ProgressMode::Lines => Display::Lines {
                every: config.every,
                last_line: Instant::now(),
            },
            ProgressMode::Off | ProgressMode::Auto => Display::Off,
        };
        Self {
            label,
            unit,
            state: MeterState {
                done: 0,
                total,
                images: 0,
                elapsed: Duration::ZERO,
            },
            started: Instant::now(),
            display,
        }
    }

    /// Where the job is now.
    pub fn state(&self) -> MeterState {
        MeterState {
            elapsed: self.started.elapsed(),
            ..self.state
        }
    }

    /// `units` more done, over `images` images; `detail` (the figures after the count and the
    /// pace: loss terms, ETA of a stage) is formatted only when the display shows it.
    pub fn advance(
        &mut self,
        units: usize,
        images: usize,
        detail: impl FnOnce(&MeterState) -> String,
    ) {
        self.state.done += units as u64;
        self.state.images += images as u64;
        let state = self.state();
        let line_due = match &mut self.display {
            Display::Off => false,
            Display::Bar { bar, last_message } => {
                bar.inc(units as u64);
                if last_message.is_none_or(|t| t.elapsed() >= BAR_TEXT_EVERY) {
                    *last_message = Some(Instant::now());
                    bar.set_message(join(&pace(&state, false), &detail(&state)));
                }
                return;
            }
            Display::Lines { every, last_line } => {
                let due = last_line.elapsed() >= *every;
                if due {
                    *last_line = Instant::now();
                }
                due
            }
        };
        if line_due {
            eprintln!("{}", self.line(&state, &detail(&state)));
        }
    }

    /// One plain line of where the job is: `LABEL: N/TOTAL UNIT (P %), R img/s, eta T; DETAIL`.
    fn line(&self, state: &MeterState, detail: &str) -> String {
        let count = match state.total {
            Some(total) => format!(
                "{}/{total} {} ({:.1} %)",
                state.done,
                self.unit,
                100.0 * state.done as f64 / total.max(1) as f64
            ),
            None => format!("{} {}", state.done, self.unit),
        };
        format!(
            "{}: {}",
            self.label,
            join(&format!("{count}, {}", pace(state, true)), detail)
        )
    }

    /// Prints `line` so that it stays (above the bar in a terminal, on its own line otherwise);
    /// nothing when progress is off.
    pub fn note(&self, line: &str) {
        match &self.display {
            Display::Bar { bar, .. } => bar.println(line),
            Display::Lines { .. } => eprintln!("{line}"),
            Display::Off => {}
        }
    }

    /// Says in the bar what the job does now (`evaluating`), where a bar is shown.
    pub fn status(&self, text: &str) {
        if let Display::Bar { bar, .. } = &self.display {
            bar.set_message(text.to_string());
        }
    }

    /// Ends the job: the bar is cleared (lasting lines stay).
    pub fn finish(self) -> MeterState {
        if let Display::Bar { bar, .. } = &self.display {
            bar.finish_and_clear();
        }
        self.state()
    }

    /// Counts each batch of `batches` as it is taken (one unit, its rows as images: pass
    /// batches of one copy per image), for evaluation passes and feature extraction.
    pub fn batches<I>(self, batches: I) -> MeteredBatches<I::IntoIter>
    where
        I: IntoIterator<Item = Result<HostBatch, LoadError>>,
    {
        MeteredBatches {
            batches: batches.into_iter(),
            meter: Some(self),
        }
    }
}

/// `R img/s, eta T` of `state` (`eta` only when known; `elapsed` with `with_elapsed`).
fn pace(state: &MeterState, with_elapsed: bool) -> String {
    let mut text = format!("{:.0} img/s", state.images_per_second());
    if with_elapsed {
        text += &format!(", {} elapsed", clock(state.elapsed));
    }
    if let Some(eta) = state.eta() {
        text += &format!(", eta {}", clock(eta));
    }
    text
}

fn join(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head}; {detail}")
    }
}

/// Batches counted by a [`Meter`] as they pass ([`Meter::batches`]); the meter finishes with
/// the last batch.
pub struct MeteredBatches<I> {
    batches: I,
    meter: Option<Meter>,
}

impl<I: Iterator<Item = Result<HostBatch, LoadError>>> Iterator for MeteredBatches<I> {
    type Item = Result<HostBatch, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.batches.next();
        match &next {
            Some(Ok(batch)) => {
                if let Some(meter) = self.meter.as_mut() {
                    meter.advance(1, batch.labels.len(), |_| String::new());
                }
            }
            _ => {
                if let Some(meter) = self.meter.take() {
                    meter.finish();
                }
            }
        }
        next
    }
}

/// The progress of a training stage: an [`EpochMeter`] per epoch and a lasting line per
/// finished epoch (an [`EpochListener`]), with the stage's ETA from the epochs timed so far.
pub struct StageProgress {
    config: ProgressConfig,
    stage: String,
    epochs: usize,
    steps_per_epoch: Option<usize>,
    /// Wall seconds of the epochs finished in this process.
    epoch_seconds: Vec<f64>,
    /// The meter of the epoch running now.
    current: Option<Meter>,
}

impl StageProgress {
    /// The progress of `stage`, `epochs` epochs of `steps_per_epoch` steps each (when known).
    pub fn new(
        config: ProgressConfig,
        stage: &str,
        epochs: usize,
        steps_per_epoch: Option<usize>,
    ) -> Self {
        Self {
            config,
            stage: stage.to_string(),
            epochs,
            steps_per_epoch,
            epoch_seconds: Vec::new(),
            current: None,
        }
    }

    /// The observer of the steps of `epoch` (counted from 1).
    pub fn epoch(&mut self, epoch: usize) -> EpochMeter<'_> {
        self.epoch_from(epoch, 0)
    }

    /// The meter of epoch `epoch` resumed after its step `steps_done` (from a checkpoint inside
    /// it): it counts the steps left.
    pub fn epoch_from(&mut self, epoch: usize, steps_done: usize) -> EpochMeter<'_> {
        let mut label = format!("{} epoch {epoch}/{}", self.stage, self.epochs);
        if steps_done > 0 {
            label += &format!(" from step {}", steps_done + 1);
        }
        let steps_left = self.steps_per_epoch.map(|s| s.saturating_sub(steps_done));
        let meter = Meter::new(&self.config, label, steps_left, "steps");
        let mean_epoch = mean(&self.epoch_seconds);
        let later_epochs = self.epochs.saturating_sub(epoch);
        EpochMeter {
            meter: self.current.insert(meter),
            sums: BTreeMap::new(),
            steps: 0,
            later_epochs,
            mean_epoch,
        }
    }

    /// Says in the bar that the epoch's training is over and the evaluation runs.
    pub fn evaluating(&self) {
        if let Some(meter) = &self.current {
            meter.status("evaluating on the test set");
        }
    }

    /// The lasting line of a finished epoch.
    fn epoch_line(&self, summary: &EpochSummary) -> String {
        let report = &summary.report;
        let terms = terms_text(&report.terms, 1.0);
        let evaluation = &summary.evaluation;
        let mut test = format!(
            "test top-1 {:.2} %, top-5 {:.2} %",
            evaluation.top1, evaluation.top5
        );
        if let Some(ss) = evaluation.ss_top1 {
            test += &format!(", SS head {ss:.2} %");
        }
        if let Some(best) = summary.best {
            test += &format!(
                " (best {} {:.2} % at epoch {})",
                summary.select_by.label(),
                summary.select_by.of(&best.evaluation),
                best.epoch
            );
        }
        let remaining = self.epochs.saturating_sub(summary.epoch) as f64;
        let stage_eta = mean(&self.epoch_seconds).map(|m| Duration::from_secs_f64(m * remaining));
        let eta = stage_eta
            .map(|eta| format!(", stage eta {}", clock(eta)))
            .unwrap_or_default();
        format!(
            "{} epoch {}/{}: lr {}, loss {terms}, train top-1 {:.2} %; {test}; {}, {:.0} img/s{eta}",
            summary.stage,
            summary.epoch,
            summary.epochs,
            lr_text(summary.lr),
            report.accuracy.top1_percent(),
            clock(Duration::from_secs_f64(summary.seconds)),
            report.images as f64 / report.seconds.max(1e-9),
        )
    }
}

impl<B: Backend, M, O> EpochListener<B, M, O> for StageProgress {
    fn epoch_end(&mut self, end: &EpochEnd<'_, M, O>) -> Result<(), TrainError> {
        self.epoch_seconds.push(end.summary.seconds);
        let line = self.epoch_line(end.summary);
        match self.current.take() {
            Some(meter) => {
                meter.note(&line);
                meter.finish();
            }
            None if self.config.resolved() != ProgressMode::Off => eprintln!("{line}"),
            None => {}
        }
        Ok(())
    }
}

/// The progress of one training epoch: each step's loss terms summed for their running mean,
/// the epoch's and the stage's ETA.
pub struct EpochMeter<'a> {
    meter: &'a mut Meter,
    sums: BTreeMap<String, f64>,
    steps: usize,
    later_epochs: usize,
    /// Mean wall time of the epochs finished so far, when any.
    mean_epoch: Option<f64>,
}

impl StepObserver for EpochMeter<'_> {
    fn step(&mut self, step: &StepLog) {
        for (name, value) in &step.terms {
            *self.sums.entry(name.clone()).or_default() += value;
        }
        self.steps += 1;
        let (sums, steps) = (&self.sums, self.steps);
        let (later, mean_epoch) = (self.later_epochs as f64, self.mean_epoch);
        self.meter.advance(1, step.images, |state| {
            let mut text = format!("loss {}", terms_text(sums, steps as f64));
            let epoch = mean_epoch.or_else(|| state.projected().map(|d| d.as_secs_f64()));
            if let (Some(eta), Some(epoch)) = (state.eta(), epoch) {
                let stage = eta + Duration::from_secs_f64(epoch * later);
                text += &format!(", stage eta {}", clock(stage));
            }
            text
        });
    }
}

/// `total 1.234 (ce 1.100, kd 0.134)`: the sums divided by `count`, `total` first.
fn terms_text(sums: &BTreeMap<String, f64>, count: f64) -> String {
    let shown = |(name, value): (&String, &f64)| format!("{name} {:.4}", value / count.max(1.0));
    let parts: Vec<String> = sums
        .iter()
        .filter(|(n, _)| *n != TOTAL)
        .map(shown)
        .collect();
    match sums.get(TOTAL) {
        Some(total) if parts.len() > 1 => {
            format!("total {:.4} ({})", total / count.max(1.0), parts.join(", "))
        }
        _ => parts.join(", "),
    }
}

/// A learning rate as it is usually written: `0.05`, `0.0005`, `5e-6`.
fn lr_text(lr: f64) -> String {
    if lr == 0.0 || lr >= 1e-4 {
        let text = format!("{lr:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{lr:e}")
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_and_eta_follow_the_units_done() {
        let state = MeterState {
            done: 25,
            total: Some(100),
            images: 1600,
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(state.images_per_second(), 160.0);
        assert_eq!(state.eta(), Some(Duration::from_secs(30)));
        assert_eq!(state.projected(), Some(Duration::from_secs(40)));
        assert_eq!(MeterState { done: 0, ..state }.eta(), None);
        assert_eq!(
            MeterState {
                total: None,
                ..state
            }
            .eta(),
            None
        );
        assert_eq!(clock(Duration::from_secs(3725)), "01:02:05");
        let rates = [0.05, 0.05 * 0.1 * 0.1, 0.1, 5e-6, 0.0];
        assert_eq!(rates.map(lr_text), ["0.05", "0.0005", "0.1", "5e-6", "0"]);
    }

    #[test]
    fn terms_read_total_first_then_each() {
        let sums = BTreeMap::from([
            ("total".to_string(), 3.0),
            ("ce".to_string(), 2.0),
            ("kd".to_string(), 1.0),
        ]);
        assert_eq!(
            terms_text(&sums, 2.0),
            "total 1.5000 (ce 1.0000, kd 0.5000)"
        );
        let one = BTreeMap::from([("total".to_string(), 3.0), ("ce".to_string(), 3.0)]);
        assert_eq!(terms_text(&one, 1.0), "ce 3.0000");
    }

    #[test]
    fn lines_name_the_job_its_count_and_pace() {
        let config = ProgressConfig::lines(Duration::ZERO);
        let meter = Meter::new(&config, "teacher epoch 3/240", Some(782), "steps");
        let state = MeterState {
            done: 391,
            total: Some(782),
            images: 25024,
            elapsed: Duration::from_secs(20),
        };
        let line = meter.line(&state, "loss ce 1.2000");
        assert_eq!(
            line,
            "teacher epoch 3/240: 391/782 steps (50.0 %), 1251 img/s, 00:00:20 elapsed, \
             eta 00:00:20; loss ce 1.2000"
        );
    }
}
