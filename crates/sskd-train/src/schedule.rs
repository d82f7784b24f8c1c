//! Learning-rate schedules.

/// PyTorch's `MultiStepLR` stepped once per epoch: `lr = base · γ^(number of milestones ≤
/// epoch)` for a 0-based epoch (e.g. base 0.05, milestones 150/180/210, γ 0.1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultiStepLr {
    /// Initial learning rate.
    pub base: f64,
    /// Epochs (0-based) at which the rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    /// The factor.
    pub gamma: f64,
}

impl MultiStepLr {
    /// The learning rate of 0-based `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| m <= epoch).count();
        self.base * self.gamma.powi(passed as i32)
    }
}

/// PyTorch's `CosineAnnealingLR(T_max = epochs, eta_min = min)` stepped once per epoch:
/// `lr = min + (base − min)·(1 + cos(π·epoch/epochs))/2` for a 0-based epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CosineLr {
    /// Initial learning rate.
    pub base: f64,
    /// The period `T_max` in epochs (usually the run's epoch count).
    pub epochs: usize,
    /// The floor `eta_min`.
    #[serde(default)]
    pub min: f64,
}

impl CosineLr {
    /// The learning rate of 0-based `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        let phase = std::f64::consts::PI * epoch as f64 / self.epochs.max(1) as f64;
        self.min + (self.base - self.min) * (1.0 + phase.cos()) / 2.0
    }
}

/// A per-epoch learning-rate schedule, as it appears in run configs:
/// `{"kind": "multi_step", "base": 0.05, "milestones": [150, 180, 210], "gamma": 0.1}` or
/// `{"kind": "cosine", "base": 0.05, "epochs": 15}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// [`MultiStepLr`].
    MultiStep(MultiStepLr),
    /// [`CosineLr`].
    Cosine(CosineLr),
}

impl LrSchedule {
    /// SSKD's step schedule: `base`, ×0.1 at each milestone.
    pub fn multi_step(base: f64, milestones: &[usize]) -> Self {
        LrSchedule::MultiStep(MultiStepLr {
            base,
            milestones: milestones.to_vec(),
            gamma: 0.1,
        })
    }

    /// The learning rate of 0-based `epoch`.
    pub fn lr(&self, epoch: usize) -> f64 {
        match self {
            LrSchedule::MultiStep(schedule) => schedule.lr(epoch),
            LrSchedule::Cosine(schedule) => schedule.lr(epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_matches_torch_cosine_annealing() {
        // torch.optim.lr_scheduler.CosineAnnealingLR(opt(lr=0.05), T_max=15) after 0, 5, 14 steps.
        let schedule = CosineLr {
            base: 0.05,
            epochs: 15,
            min: 0.0,
        };
        for (epoch, torch) in [(0, 0.05), (5, 0.0375), (14, 0.000_546_31)] {
            assert!((schedule.lr(epoch) - torch).abs() < 1e-7, "{epoch}");
        }
        let json = serde_json::json!({"kind": "cosine", "base": 0.05, "epochs": 15});
        let parsed: LrSchedule = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, LrSchedule::Cosine(schedule));
    }

    #[test]
    fn matches_the_sskd_schedule() {
        let schedule = MultiStepLr {
            base: 0.05,
            milestones: vec![150, 180, 210],
            gamma: 0.1,
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(schedule.lr(0), 0.05) && close(schedule.lr(149), 0.05));
        assert!(close(schedule.lr(150), 0.005) && close(schedule.lr(179), 0.005));
        assert!(close(schedule.lr(180), 0.0005) && close(schedule.lr(239), 0.00005));
    }
}
