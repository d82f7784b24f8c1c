//! What can stop training, each cause with its context (the file, the batch row, the field).

use std::path::PathBuf;

use sskd_augment::loader::LoadError;

use crate::stage::Stage;

/// What can stop training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file of the run could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Model(#[from] sskd_models::ModelError),
    /// The data loader failed.
    #[error("data: {0}")]
    Data(#[from] LoadError),
    /// A batch the networks cannot take.
    #[error("data: {0}")]
    Batch(#[from] BatchError),
    /// A loss rejected its inputs.
    #[error(transparent)]
    Loss(#[from] sskd_losses::LossError),
    /// A training thread of a data-parallel step panicked.
    #[error("data-parallel worker: {panic}")]
    Worker {
        /// The panic's message.
        panic: String,
    },
    /// The group of nodes training together failed (feature `collective`).
    #[error("{doing}: {error}")]
    Nodes {
        /// What the node was doing (`joining the node group`, ...).
        doing: &'static str,
        /// Burn's error, as it prints it.
        error: String,
    },
    /// Another node of the group died, could not be reached, or stalled past the timeout
    /// (feature `collective`).
    #[error("{doing}{}: {peer}", place.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Peer {
        /// What this node was doing (`summing over the nodes`, ...).
        doing: &'static str,
        /// The node and what it did.
        peer: PeerFault,
        /// Where training was, when it was training.
        place: Option<StepPlace>,
    },
    /// The run's settings do not fit together.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The checkpoint to resume from is not of this run.
    #[error("{path}: {mismatch}")]
    Resume {
        /// The checkpoint's `S-checkpoint.json`.
        path: PathBuf,
        /// What differs.
        mismatch: ResumeMismatch,
    },
    /// Tensor values could not be read back.
    #[error("{what}: {source}")]
    Values {
        /// The tensor.
        what: &'static str,
        /// Burn's error.
        #[source]
        source: burn::tensor::DataError,
    },
    /// A parameter of a module could not be read.
    #[error("{what}: {source}")]
    Snapshot {
        /// The parameter.
        what: &'static str,
        /// burn-store's error.
        #[source]
        source: burn_store::TensorSnapshotError,
    },
    /// A stop was requested ([`crate::pause::StopRequest`]: SIGTERM, SIGINT): the run ended
    /// after a step, with a checkpoint at that step.
    #[error(
        "stopped on request in stage {stage}, epoch {epoch}, after step {step}: checkpoint \
         {}; the same command with --resume continues there", checkpoint.display()
    )]
    Stopped {
        /// The stage.
        stage: Stage,
        /// The epoch, from 1.
        epoch: usize,
        /// Steps of the epoch done.
        step: usize,
        /// The checkpoint's `S-checkpoint.json`.
        checkpoint: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error("{stage} training diverged: the loss is {value}")]
    Diverged {
        /// The stage.
        stage: Stage,
        /// The loss value.
        value: f64,
    },
}

impl TrainError {
    /// The error with the place in training where it happened, for errors that say where
    /// (a failed peer) and do not say it yet.
    pub fn at(self, place: StepPlace) -> Self {
        match self {
            Self::Peer {
                doing,
                peer,
                place: None,
            } => Self::Peer {
                doing,
                peer,
                place: Some(place),
            },
            other => other,
        }
    }
}

/// A node of the group that failed: its rank and address, and whether it went away (killed,
/// unreachable) or stalled (sent nothing within the timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {rank} ({address}) {}", match stalled_seconds {
    Some(seconds) => format!("sent nothing within {seconds} s (stalled? --node-timeout sets the wait)"),
    None => "went away: its connection closed or it cannot be reached (killed?)".to_string(),
})]
pub struct PeerFault {
    /// Its rank (`--node-rank`).
    pub rank: u32,
    /// Its data address (`--node-address`).
    pub address: String,
    /// Set when it stalled: the timeout it exceeded, in seconds.
    pub stalled_seconds: Option<u64>,
}

/// Where in training something happened: the stage, the epoch (from 1) and its steps done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlace {
    /// The stage.
    pub stage: Stage,
    /// The epoch, from 1.
    pub epoch: usize,
    /// Steps of the epoch done.
    pub steps_done: usize,
}

impl std::fmt::Display for StepPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {}, epoch {} with {} of its steps done",
            self.stage, self.epoch, self.steps_done
        )
    }
}

/// A batch the networks cannot take.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Images smaller than a network takes (`ModelError::InputTooSmall`, boxed: the error
    /// stays small).
    #[error(transparent)]
    TooSmall(Box<sskd_models::ModelError>),
    /// A label outside the classifier's classes.
    #[error("label {label} of row {row} is {} (is num_classes that of the dataset?)", outside(*classes))]
    Label {
        /// The label.
        label: i64,
        /// Its row in the batch.
        row: usize,
        /// The classifier's classes, when known.
        classes: Option<usize>,
    },
    /// Features of a linear probe that do not fit together.
    #[error(
        "linear probe: {train_rows} training rows of width {train_width}, test width {test_width}"
    )]
    ProbeFeatures {
        /// Training rows.
        train_rows: usize,
        /// Their width.
        train_width: usize,
        /// The test rows' width.
        test_width: usize,
    },
    /// A linear probe's label outside its classes.
    #[error("linear probe: label {label} outside 0..{classes}")]
    ProbeLabel {
        /// The label.
        label: i64,
        /// The classes.
        classes: usize,
    },
    /// Networks of different class counts compared class by class.
    #[error("teacher has {teacher} classes, student {student}")]
    ClassCounts {
        /// The teacher's.
        teacher: usize,
        /// The student's.
        student: usize,
    },
    /// A network without a classifier of the expected shape.
    #[error("no classifier weight of shape {shape:?}")]
    NoClassifier {
        /// `[embedding, classes]`.
        shape: [usize; 2],
    },
}

fn outside(classes: Option<usize>) -> String {
    match classes {
        Some(classes) => format!("outside the network's classes 0..{classes}"),
        None => "negative".to_string(),
    }
}

/// Settings of a run that do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No device to train on.
    #[error("no training device given")]
    NoDevice,
    /// A method with a per-sample memory bank over several devices or nodes.
    #[error(
        "this method keeps a memory bank of per-sample embeddings, which data-parallel \
         training over {over} cannot keep consistent; train it on one device of one node"
    )]
    MemoryBankInParallel {
        /// `several nodes` or `N devices`.
        over: String,
    },
    /// A pre-training epoch of a method that has none.
    #[error("method `{method}` has no pre-training stage")]
    NoPretraining {
        /// The method.
        method: &'static str,
    },
    /// A node rank outside the group.
    #[error("node rank {rank} is not in 0..{nodes} (--node-rank, --nodes)")]
    NodeRank {
        /// The rank.
        rank: u32,
        /// The nodes.
        nodes: u32,
    },
    /// A node address that is not `ws://host:port`.
    #[error("{flag} `{address}` must be a WebSocket address, ws://host:port")]
    NodeAddress {
        /// The flag it came from.
        flag: &'static str,
        /// The address.
        address: String,
    },
    /// A step asked of a module an earlier failed step consumed.
    #[error("a previous step failed; the module is gone")]
    ModuleGone,
    /// A node address Burn cannot parse.
    #[error("address `{address}`: {reason}")]
    AddressParse {
        /// The address.
        address: String,
        /// Burn's reason.
        reason: String,
    },
}

/// How a checkpoint differs from the run resuming it.
#[derive(Debug, thiserror::Error)]
pub enum ResumeMismatch {
    /// Another seed.
    #[error("the checkpoint was made with seed {stored}, this run uses seed {given}")]
    Seed {
        /// The checkpoint's.
        stored: u64,
        /// This run's.
        given: u64,
    },
    /// A checkpoint inside an epoch of another length (another batch size or data set).
    #[error(
        "the checkpoint is inside an epoch of {stored} steps, this run's epochs have {given} \
         (another batch size or data set?)"
    )]
    StepsPerEpoch {
        /// The checkpoint's.
        stored: usize,
        /// This run's.
        given: usize,
    },
    /// More epochs done than planned.
    #[error("the checkpoint has {done} epochs done, more than the {planned} planned")]
    Epochs {
        /// Done.
        done: usize,
        /// Planned.
        planned: usize,
    },
}
