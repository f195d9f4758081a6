use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Min,
    Max,
}

/// Stops when `metric` has not improved by more than `min_delta` for `patience` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub metric: String,
    pub mode: Mode,
    pub patience: usize,
    pub min_delta: f64,
    pub best: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_without_improvement: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub improved: bool,
    pub stop: bool,
}

impl EarlyStopping {
    pub fn new(metric: &str, mode: Mode, patience: usize, min_delta: f64) -> Self {
        Self {
            metric: metric.into(),
            mode,
            patience,
            min_delta,
            best: None,
            best_epoch: None,
            epochs_without_improvement: 0,
        }
    }

    /// Records the metric of `epoch`. A NaN never improves.
    pub fn update(&mut self, epoch: usize, value: f64) -> Verdict {
        let improved = match self.best {
            _ if value.is_nan() => false,
            None => true,
            Some(best) => match self.mode {
                Mode::Min => value < best - self.min_delta,
                Mode::Max => value > best + self.min_delta,
            },
        };
        if improved {
            self.best = Some(value);
            self.best_epoch = Some(epoch);
            self.epochs_without_improvement = 0;
        } else {
            self.epochs_without_improvement += 1;
        }
        Verdict {
            improved,
            stop: self.epochs_without_improvement >= self.patience.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_and_min_delta() {
        let mut e = EarlyStopping::new("val_loss", Mode::Min, 2, 0.1);
        assert!(e.update(1, 1.0).improved);
        assert!(!e.update(2, 0.95).improved); // within min_delta
        let v = e.update(3, 0.99);
        assert!(!v.improved && v.stop);
        let mut e = EarlyStopping::new("r10", Mode::Max, 1, 0.0);
        e.update(1, 0.5);
        assert!(e.update(2, 0.6).improved);
        assert!(e.update(3, f64::NAN).stop);
        assert_eq!(e.best_epoch, Some(2));
    }
}
