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

#[cfg(test)]
mod tests {
    use super::*;

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
