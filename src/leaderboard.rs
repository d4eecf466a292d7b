//! The leaderboard (SPEC §6): feasible complete trials best first (Pareto ranks for several
//! objectives, the first objective within a rank), infeasible ones after them, the best
//! trade-off marked.

use crate::study::StudyDefinition;
use quantune_state::{TrialRecord, TrialState};
use quantune_strategies::pareto;
use serde::{Deserialize, Serialize};

/// One leaderboard row.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// 1-based position for a single objective; the Pareto rank for several. `null` for
    /// infeasible trials.
    pub rank: Option<usize>,
    /// The trial.
    #[serde(flatten)]
    pub trial: crate::api::TrialView,
    /// Whether the trial meets every constraint.
    pub feasible: bool,
    /// Whether this is the best trial (single objective) or the front point with the largest
    /// hypervolume contribution (several).
    pub best: bool,
}

/// Whether a complete trial meets every constraint.
pub fn feasible(def: &StudyDefinition, t: &TrialRecord) -> bool {
    t.state == TrialState::Complete && def.constraints.iter().all(|c| c.satisfied_by(&t.metrics))
}

/// The losses (smaller is better) of a trial, one per objective; `None` if a metric is missing.
pub fn losses(def: &StudyDefinition, t: &TrialRecord) -> Option<Vec<f64>> {
    def.objectives
        .iter()
        .map(|o| t.metrics.get(&o.metric).map(|v| o.loss(*v)))
        .collect()
}

/// Builds the leaderboard of a study from its trials.
pub fn build(def: &StudyDefinition, trials: &[TrialRecord], top: Option<usize>) -> Vec<Row> {
    let mut good: Vec<(&TrialRecord, Vec<f64>)> = trials
        .iter()
        .filter(|t| feasible(def, t))
        .filter_map(|t| losses(def, t).map(|l| (t, l)))
        .collect();
    let points: Vec<Vec<f64>> = good.iter().map(|(_, l)| l.clone()).collect();
    let ranks = if def.objectives.len() > 1 {
        pareto::non_dominated_ranks(&points)
    } else {
        vec![1; points.len()]
    };
    let mut order: Vec<usize> = (0..good.len()).collect();
    order.sort_by(|&a, &b| {
        ranks[a]
            .cmp(&ranks[b])
            .then(good[a].1[0].total_cmp(&good[b].1[0]))
            .then(good[a].0.number.cmp(&good[b].0.number))
    });
    let best = best_index(def, &points, &ranks);
    let mut rows = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        let rank = if def.objectives.len() > 1 {
            ranks[i]
        } else {
            pos + 1
        };
        rows.push(Row {
            rank: Some(rank),
            trial: crate::api::TrialView::from(good[i].0),
            feasible: true,
            best: Some(i) == best,
        });
    }
    good.clear();
    // Infeasible: complete trials breaking a constraint, and trials that declared themselves so.
    let mut bad: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| {
            (t.state == TrialState::Complete && !feasible(def, t))
                || t.state == TrialState::Infeasible
        })
        .collect();
    bad.sort_by(|a, b| {
        let va = def.objectives[0].loss(
            a.metrics
                .get(&def.objectives[0].metric)
                .copied()
                .unwrap_or(f64::NAN),
        );
        let vb = def.objectives[0].loss(
            b.metrics
                .get(&def.objectives[0].metric)
                .copied()
                .unwrap_or(f64::NAN),
        );
        va.total_cmp(&vb).then(a.number.cmp(&b.number))
    });
    rows.extend(bad.into_iter().map(|t| Row {
        rank: None,
        trial: crate::api::TrialView::from(t),
        feasible: false,
        best: false,
    }));
    if let Some(n) = top {
        rows.truncate(n);
    }
    rows
}

/// The index (into `points`) of the best trade-off.
fn best_index(def: &StudyDefinition, points: &[Vec<f64>], ranks: &[usize]) -> Option<usize> {
    if points.is_empty() {
        return None;
    }
    if def.objectives.len() == 1 {
        return (0..points.len()).min_by(|&a, &b| points[a][0].total_cmp(&points[b][0]));
    }
    let front: Vec<usize> = (0..points.len()).filter(|&i| ranks[i] == 1).collect();
    if front.len() == 1 {
        return Some(front[0]);
    }
    // Reference point: the worst value of every objective over all feasible trials, pushed out
    // by 10% of its range so extreme front points still contribute.
    let dims = points[0].len();
    let reference: Vec<f64> = (0..dims)
        .map(|d| {
            let lo = points.iter().map(|p| p[d]).fold(f64::INFINITY, f64::min);
            let hi = points
                .iter()
                .map(|p| p[d])
                .fold(f64::NEG_INFINITY, f64::max);
            hi + 0.1 * (hi - lo).max(1e-12)
        })
        .collect();
    let front_points: Vec<Vec<f64>> = front.iter().map(|&i| points[i].clone()).collect();
    let contrib = pareto::hypervolume_contributions(&front_points, &reference);
    let best =
        (0..front.len()).max_by(|&a, &b| contrib[a].total_cmp(&contrib[b]).then(b.cmp(&a)))?;
    Some(front[best])
}
