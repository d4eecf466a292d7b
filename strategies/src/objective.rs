//! Objectives and constraints: which metrics a study optimizes or bounds, and how a trial's
//! metrics are turned into losses (smaller is better) and feasibility.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether an objective metric should go down or up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

/// One objective metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// The metric name in the trial's final line.
    pub metric: String,
    /// Its direction.
    pub direction: Direction,
}

impl Objective {
    /// The metric as a loss: itself when minimizing, negated when maximizing.
    pub fn loss(&self, value: f64) -> f64 {
        match self.direction {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }
}

/// A bound on a metric; a trial violating it is infeasible.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    /// The metric name.
    pub metric: String,
    /// Smallest allowed value, inclusive.
    pub min: Option<f64>,
    /// Largest allowed value, inclusive.
    pub max: Option<f64>,
}

impl Constraint {
    /// How far `value` is outside the bound (0 when satisfied).
    pub fn violation(&self, value: f64) -> f64 {
        let below = self.min.map_or(0.0, |m| (m - value).max(0.0));
        let above = self.max.map_or(0.0, |m| (value - m).max(0.0));
        below + above
    }

    /// Whether the metrics satisfy the bound (a missing metric does not).
    pub fn satisfied_by(&self, metrics: &BTreeMap<String, f64>) -> bool {
        metrics
            .get(&self.metric)
            .is_some_and(|v| self.violation(*v) == 0.0)
    }
}
