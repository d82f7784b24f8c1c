//! The stages of the pipeline, by the names their files, log lines and messages carry.

use std::fmt;

use crate::metrics::SelectBy;

/// A stage of training: the teacher (stage 1), its SS head on the frozen backbone (stage 2),
/// the student (stage 3), or a method's pre-training of the student's parts before stage 3
/// (RepDistiller's `init` of AB, FT and FSP).
///
/// Its [`name`](Stage::name) starts the names of the stage's files in a run folder
/// (`teacher-best.mpk`, `student-checkpoint.json`, `student-init-e20.model.mpk`) and is its
/// `stage` field in `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Stage 1: the teacher, cross-entropy alone.
    Teacher,
    /// Stage 2: the teacher's SS head.
    Head,
    /// Stage 3: the student.
    Student,
    /// A method's pre-training stage, run before the student's epochs.
    Pretraining,
}

impl Stage {
    /// Every stage, in the order a run goes through them.
    pub const ALL: [Stage; 4] = [
        Stage::Teacher,
        Stage::Head,
        Stage::Pretraining,
        Stage::Student,
    ];

    /// The stage's name in files and logs: `teacher`, `head`, `student`, `student-init`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Teacher => "teacher",
            Stage::Head => "head",
            Stage::Student => "student",
            Stage::Pretraining => "student-init",
        }
    }

    /// The stage named `name` (see [`Stage::name`]).
    pub fn named(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.name() == name)
    }

    /// The figure its best epoch is chosen by: the SS head's accuracy in stage 2, the
    /// classifier's top-1 elsewhere.
    pub fn select_by(self) -> SelectBy {
        match self {
            Stage::Head => SelectBy::SsTop1,
            _ => SelectBy::Top1,
        }
    }

    /// Whether the stage trains a classifier whose accuracy a report compares (not the SS
    /// head, not a pre-training).
    pub fn trains_classifier(self) -> bool {
        matches!(self, Stage::Teacher | Stage::Student)
    }

    /// The log tag naming the architecture it trains (`teacher_arch`, `student_arch`).
    pub fn arch_tag(self) -> &'static str {
        match self {
            Stage::Teacher | Stage::Head => "teacher_arch",
            Stage::Student | Stage::Pretraining => "student_arch",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_only_the_head_selects_by_its_accuracy() {
        for stage in Stage::ALL {
            assert_eq!(Stage::named(stage.name()), Some(stage));
            assert_eq!(stage.select_by() == SelectBy::SsTop1, stage == Stage::Head);
        }
        assert_eq!(Stage::named("students"), None);
        assert_eq!(format!("{}", Stage::Pretraining), "student-init");
    }
}
