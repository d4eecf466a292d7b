//! The leaderboard (docs/CLI.md, "Leaderboard row"): feasible complete trials best first (Pareto ranks for several
//! objectives, the first objective within a rank), infeasible ones after them, the best
//! trade-off marked.

use crate::model::study::StudyDefinition;
use quantune_state::{TrialRecord, TrialState};
use quantune_strategies::pareto;
use serde::{Deserialize, Serialize};

/// One leaderboard row.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Row {
    /// 1-based position for a single objective; the Pareto rank for several. `null` for
    /// infeasible trials.
    pub rank: Option<usize>,
    /// The trial.
    #[serde(flatten)]
    pub trial: crate::model::wire::TrialView,
    /// Whether the trial meets every constraint.
    pub feasible: bool,
    /// Whether this is the best trial (single objective) or the front point with the largest
    /// hypervolume contribution (several).
    pub best: bool,
    /// Objectives on which this trial cannot be told apart from the row above it: the two
    /// values differ by less than the larger of their measured spreads (`<metric>_spread`,
    /// reported by the trials). Empty when the trials report no spread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<Tie>,
}

/// A difference within measurement noise between a row and the row above it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Tie {
    /// The trial of the row above.
    pub with: u64,
    /// The objective metric, e.g. `latency_ms`.
    pub metric: String,
}

/// The suffix a trial's metric carries for its measured run-to-run spread (max − min over the
/// timed repeats), e.g. `latency_ms_spread`.
pub const SPREAD_SUFFIX: &str = "_spread";

/// Objectives on which trials `a` and `b` differ by less than the larger of their measured
/// spreads. A metric without a spread on either trial is never a tie.
pub fn ties(def: &StudyDefinition, a: &TrialRecord, b: &TrialRecord) -> Vec<String> {
    def.objectives
        .iter()
        .filter(|o| {
            let spread_key = format!("{}{SPREAD_SUFFIX}", o.metric);
            let (Some(va), Some(vb)) = (a.metrics.get(&o.metric), b.metrics.get(&o.metric)) else {
                return false;
            };
            let (Some(sa), Some(sb)) = (a.metrics.get(&spread_key), b.metrics.get(&spread_key))
            else {
                return false;
            };
            (va - vb).abs() <= sa.max(*sb)
        })
        .map(|o| o.metric.clone())
        .collect()
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

/// A study's trials in leaderboard order, without the rows themselves: what is worth caching
/// per study version (ranking 100k trials takes a while; building ten rows does not).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranking {
    /// Feasible trials best first, each with its rank (position or Pareto rank).
    pub feasible: Vec<(u64, usize)>,
    /// Infeasible trials, by the first objective.
    pub infeasible: Vec<u64>,
    /// The best trade-off (single objective: best value; several: the front point with the
    /// largest hypervolume contribution). The one definition of "best" every view uses.
    pub best: Option<u64>,
}

impl Ranking {
    /// Ranks `trials` (any order) for `def`.
    pub fn of<'a>(
        def: &StudyDefinition,
        trials: impl IntoIterator<Item = &'a TrialRecord>,
    ) -> Self {
        let mut good: Vec<(u64, Vec<f64>)> = Vec::new();
        let mut bad: Vec<(u64, f64)> = Vec::new();
        for t in trials {
            if feasible(def, t) {
                if let Some(l) = losses(def, t) {
                    good.push((t.number, l));
                }
            } else if (t.state == TrialState::Complete) || t.state == TrialState::Infeasible {
                let v = def.objectives[0].loss(
                    t.metrics
                        .get(&def.objectives[0].metric)
                        .copied()
                        .unwrap_or(f64::NAN),
                );
                bad.push((t.number, v));
            }
        }
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
                .then(good[a].0.cmp(&good[b].0))
        });
        let best = best_index(def, &points, &ranks).map(|i| good[i].0);
        let feasible = order
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                let rank = if def.objectives.len() > 1 {
                    ranks[i]
                } else {
                    pos + 1
                };
                (good[i].0, rank)
            })
            .collect();
        bad.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        Ranking {
            feasible,
            infeasible: bad.into_iter().map(|(n, _)| n).collect(),
            best,
        }
    }

    /// The first `top` rows (all without `top`); `trial(n)` looks a trial up by number.
    pub fn rows<'a>(
        &self,
        def: &StudyDefinition,
        trial: impl Fn(u64) -> Option<&'a TrialRecord>,
        top: Option<usize>,
    ) -> Vec<Row> {
        let limit = top.unwrap_or(usize::MAX);
        let mut rows = Vec::new();
        let mut above: Option<&TrialRecord> = None;
        for &(n, rank) in self.feasible.iter().take(limit) {
            let Some(t) = trial(n) else { continue };
            rows.push(Row {
                rank: Some(rank),
                trial: crate::model::wire::TrialView::from(t),
                feasible: true,
                best: Some(n) == self.best,
                ties: above
                    .map(|a| {
                        ties(def, t, a)
                            .into_iter()
                            .map(|metric| Tie {
                                with: a.number,
                                metric,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            above = Some(t);
        }
        let left = limit.saturating_sub(rows.len());
        for &n in self.infeasible.iter().take(left) {
            let Some(t) = trial(n) else { continue };
            rows.push(Row {
                rank: None,
                trial: crate::model::wire::TrialView::from(t),
                feasible: false,
                best: false,
                ties: Vec::new(),
            });
        }
        rows
    }
}

/// Builds the leaderboard of a study from its trials (trial `n` at index `n`).
pub fn build(def: &StudyDefinition, trials: &[TrialRecord], top: Option<usize>) -> Vec<Row> {
    let by_number = |n: u64| {
        trials
            .get(n as usize)
            .filter(|t| t.number == n)
            .or_else(|| trials.iter().find(|t| t.number == n))
    };
    Ranking::of(def, trials).rows(def, by_number, top)
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

#[cfg(test)]
mod tests {
    use super::*;
    use quantune_strategies::ParamValue;
    use std::path::Path;

    fn def() -> StudyDefinition {
        let text = r#"
[study]
name = "t"
seed = 1
[[objective]]
metric = "latency_ms"
direction = "minimize"
[space.q]
type = "categorical"
choices = ["a", "b", "c", "d"]
[budget]
max_trials = 4
[trial]
command = ["true"]
"#;
        crate::model::study::parse(text, "t.toml", Path::new("/tmp"), None).unwrap()
    }

    fn trial(n: u64, latency: f64, spread: Option<f64>) -> TrialRecord {
        let mut t = TrialRecord::new("t", n, Default::default(), 0.0);
        std::sync::Arc::make_mut(&mut t.params).insert(
            "q".into(),
            ParamValue::Str(["a", "b", "c", "d"][n as usize].into()),
        );
        t.state = TrialState::Complete;
        std::sync::Arc::make_mut(&mut t.metrics).insert("latency_ms".into(), latency);
        if let Some(s) = spread {
            std::sync::Arc::make_mut(&mut t.metrics).insert("latency_ms_spread".into(), s);
        }
        t
    }

    #[test]
    fn rows_within_the_measured_spread_are_marked() {
        let d = def();
        // 1.00 ± 0.05 and 1.04 ± 0.02: within spread. 1.20: clearly slower. 1.21 has no spread.
        let trials = vec![
            trial(0, 1.20, Some(0.01)),
            trial(1, 1.00, Some(0.05)),
            trial(2, 1.04, Some(0.02)),
            trial(3, 1.21, None),
        ];
        let rows = build(&d, &trials, None);
        let order: Vec<u64> = rows.iter().map(|r| r.trial.trial).collect();
        assert_eq!(order, vec![1, 2, 0, 3]);
        assert!(rows[0].ties.is_empty());
        assert_eq!(
            rows[1].ties,
            vec![Tie {
                with: 1,
                metric: "latency_ms".into()
            }]
        );
        assert!(rows[2].ties.is_empty(), "0.16 apart, spreads 0.02/0.01");
        assert!(rows[3].ties.is_empty(), "no spread reported");
        let table = crate::view::table::leaderboard_table(&rows, false);
        let note = table.rows[1].last().unwrap();
        assert_eq!(note, "≈ trial 1 on latency_ms (within spread)");
    }
}
