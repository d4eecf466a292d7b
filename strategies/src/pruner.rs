//! Pruners: decide from intermediate reports whether a running trial should stop early, so its
//! slot goes to a better candidate. Pure: a pruner sees the curves the daemon hands it and
//! nothing else.
//!
//! - [`MedianPruner`]: stop a trial whose latest value is worse than the median of the complete
//!   trials at the same step (after `warmup_steps`, once `min_trials` trials can be compared).
//! - [`AshaPruner`]: asynchronous successive halving. Rungs sit at
//!   `min_resource × reduction_factor^k` steps; a trial reaching a rung continues only if it is
//!   in the top `1 / reduction_factor` of every trial that reached that rung. With several
//!   metrics, trials at a rung are ordered by non-dominated rank, then by the first metric.
//! - [`QualityGate`]: stop a trial whose intermediate report already violates a constraint by
//!   more than the study's grace margin, before its (expensive) benchmark stage runs.

use crate::display::num;
use crate::objective::{Constraint, Direction};
use crate::pareto;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One intermediate report: the step and its values.
pub type Report = (u64, BTreeMap<String, f64>);

/// The learning curve of one trial.
#[derive(Clone, Copy, Debug)]
pub struct Curve<'a> {
    /// Trial number.
    pub number: u64,
    /// Its reports, by step.
    pub reports: &'a [Report],
    /// Whether the trial completed (its curve is whole).
    pub complete: bool,
}

/// A metric a pruner compares, with the direction that is better.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruneMetric {
    /// The name in the report lines.
    pub name: String,
    /// Which way is better.
    pub direction: Direction,
}

impl PruneMetric {
    fn loss(&self, values: &BTreeMap<String, f64>) -> Option<f64> {
        let v = *values.get(&self.name)?;
        v.is_finite().then_some(match self.direction {
            Direction::Minimize => v,
            Direction::Maximize => -v,
        })
    }
}

/// What a pruner decides on.
#[derive(Clone, Copy, Debug)]
pub struct PruneContext<'a> {
    /// The trial that just reported (its last report is the new one).
    pub trial: Curve<'a>,
    /// Every other trial of the study that has reported.
    pub others: &'a [Curve<'a>],
    /// The metrics to compare (at least one).
    pub metrics: &'a [PruneMetric],
}

/// A rule that stops unpromising trials.
pub trait Pruner: Send + Sync + fmt::Debug {
    /// The name used in `pruner.kind`.
    fn name(&self) -> &'static str;

    /// `Some(reason)` when the trial should stop now.
    fn decide(&self, ctx: &PruneContext<'_>) -> Option<String>;
}

/// Stops trials worse than the median of complete trials at the same step.
#[derive(Clone, Debug, PartialEq)]
pub struct MedianPruner {
    /// Reports before this step never prune.
    pub warmup_steps: u64,
    /// Complete trials needed at a step before comparing.
    pub min_trials: usize,
}

/// The value of a curve at `step`: its last report at or before `step`.
fn value_at(reports: &[Report], step: u64, metric: &PruneMetric) -> Option<f64> {
    reports
        .iter()
        .rev()
        .filter(|(s, _)| *s <= step)
        .find_map(|(_, v)| metric.loss(v))
}

impl Pruner for MedianPruner {
    fn name(&self) -> &'static str {
        "median"
    }

    fn decide(&self, ctx: &PruneContext<'_>) -> Option<String> {
        let metric = ctx.metrics.first()?;
        let (step, values) = ctx.trial.reports.last()?;
        if *step < self.warmup_steps {
            return None;
        }
        let mine = metric.loss(values)?;
        let mut others: Vec<f64> = ctx
            .others
            .iter()
            .filter(|c| c.complete)
            .filter_map(|c| value_at(c.reports, *step, metric))
            .collect();
        if others.len() < self.min_trials.max(1) {
            return None;
        }
        others.sort_by(f64::total_cmp);
        let n = others.len();
        let median = if n % 2 == 1 {
            others[n / 2]
        } else {
            0.5 * (others[n / 2 - 1] + others[n / 2])
        };
        (mine > median).then(|| {
            let shown = |l: f64| {
                if metric.direction == Direction::Maximize {
                    -l
                } else {
                    l
                }
            };
            format!(
                "{} = {} at step {step} is worse than the median {} of {n} complete trials",
                metric.name,
                num(shown(mine)),
                num(shown(median))
            )
        })
    }
}

/// Asynchronous successive halving.
#[derive(Clone, Debug, PartialEq)]
pub struct AshaPruner {
    /// Steps at the first rung (≥ 1).
    pub min_resource: u64,
    /// η: the top 1/η of a rung goes on (≥ 2).
    pub reduction_factor: u64,
    /// No rung at or past this step (trials there always finish).
    pub max_resource: Option<u64>,
}

impl AshaPruner {
    /// The rung steps up to and including `step`.
    fn rungs_up_to(&self, step: u64) -> Vec<u64> {
        let mut rungs = Vec::new();
        let mut r = self.min_resource.max(1);
        while r <= step && self.max_resource.is_none_or(|m| r < m) {
            rungs.push(r);
            match r.checked_mul(self.reduction_factor.max(2)) {
                Some(next) => r = next,
                None => break,
            }
        }
        rungs
    }
}

/// A trial's values at a rung: those of its first report at or after the rung's step.
fn rung_losses(reports: &[Report], rung: u64, metrics: &[PruneMetric]) -> Option<Vec<f64>> {
    let (_, values) = reports.iter().find(|(s, _)| *s >= rung)?;
    metrics.iter().map(|m| m.loss(values)).collect()
}

impl Pruner for AshaPruner {
    fn name(&self) -> &'static str {
        "asha"
    }

    fn decide(&self, ctx: &PruneContext<'_>) -> Option<String> {
        let reports = ctx.trial.reports;
        let (step, _) = reports.last()?;
        let previous = reports.len().checked_sub(2).map(|i| reports[i].0);
        // Only the rungs this report crossed are decided now; earlier ones were decided before.
        for rung in self.rungs_up_to(*step) {
            if previous.is_some_and(|p| p >= rung) {
                continue;
            }
            let Some(mine) = rung_losses(reports, rung, ctx.metrics) else {
                continue;
            };
            let mut competitors: Vec<Vec<f64>> = ctx
                .others
                .iter()
                .filter_map(|c| rung_losses(c.reports, rung, ctx.metrics))
                .collect();
            competitors.push(mine.clone());
            let n = competitors.len();
            let eta = self.reduction_factor.max(2) as usize;
            // Like Optuna: until a rung has η trials, only the best there goes on.
            let keep = (n / eta).max(1);
            let ranks = if ctx.metrics.len() > 1 {
                pareto::non_dominated_ranks(&competitors)
            } else {
                vec![1; n]
            };
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| {
                ranks[a]
                    .cmp(&ranks[b])
                    .then(competitors[a][0].total_cmp(&competitors[b][0]))
            });
            let cutoff = order[keep - 1];
            let me = n - 1;
            let key = |i: usize| (ranks[i], competitors[i][0]);
            let worse = key(me).0 > key(cutoff).0
                || (key(me).0 == key(cutoff).0 && key(me).1 > key(cutoff).1);
            if worse {
                return Some(format!(
                    "not in the top {keep} of {n} trials at rung {rung} (reduction factor {eta}, by {})",
                    ctx.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        None
    }
}

/// Stops a trial whose intermediate values already break a constraint by more than `grace`.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityGate {
    /// The study's constraints.
    pub constraints: Vec<Constraint>,
    /// Allowed excess over a bound before stopping (absolute, in the metric's unit).
    pub grace: f64,
}

impl QualityGate {
    /// `Some(reason)` when `values` violate a constraint by more than the grace.
    pub fn check(&self, step: u64, values: &BTreeMap<String, f64>) -> Option<String> {
        self.constraints.iter().find_map(|c| {
            let v = *values.get(&c.metric)?;
            let excess = c.violation(v);
            (excess > self.grace || v.is_nan()).then(|| {
                let bound = match (c.min, c.max) {
                    (Some(lo), Some(hi)) => format!("[{}, {}]", num(lo), num(hi)),
                    (Some(lo), None) => format!(">= {}", num(lo)),
                    (None, Some(hi)) => format!("<= {}", num(hi)),
                    (None, None) => String::new(),
                };
                format!(
                    "quality gate: {} = {} at step {step} is outside {bound} by more than the grace {}",
                    c.metric,
                    num(v),
                    num(self.grace)
                )
            })
        })
    }
}

/// Options of the `[pruner]` table that pruners use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrunerOptions {
    /// Median: reports before this step never prune.
    pub warmup_steps: u64,
    /// Median: complete trials needed before comparing.
    pub min_trials: u64,
    /// ASHA: first rung.
    pub min_resource: u64,
    /// ASHA: η.
    pub reduction_factor: u64,
    /// ASHA: no rung at or past this step.
    pub max_resource: Option<u64>,
}

impl Default for PrunerOptions {
    fn default() -> Self {
        PrunerOptions {
            warmup_steps: 0,
            min_trials: 5,
            min_resource: 1,
            reduction_factor: 3,
            max_resource: None,
        }
    }
}

/// Every kind `pruner.kind` may name.
pub const KINDS: &[&str] = &["none", "median", "asha"];

/// Builds the pruner for `kind` (`None` for "none"); the error names the key at fault.
pub fn build(kind: &str, o: &PrunerOptions) -> Result<Option<Box<dyn Pruner>>, (String, String)> {
    let err = |k: &str, m: String| (k.to_string(), m);
    match kind {
        "none" => Ok(None),
        "median" => {
            if o.min_trials < 1 {
                return Err(err(
                    "min_trials",
                    format!("must be at least 1 (got {})", o.min_trials),
                ));
            }
            Ok(Some(Box::new(MedianPruner {
                warmup_steps: o.warmup_steps,
                min_trials: o.min_trials as usize,
            })))
        }
        "asha" => {
            if o.min_resource < 1 {
                return Err(err(
                    "min_resource",
                    format!("must be at least 1 (got {})", o.min_resource),
                ));
            }
            if o.reduction_factor < 2 {
                return Err(err(
                    "reduction_factor",
                    format!("must be at least 2 (got {})", o.reduction_factor),
                ));
            }
            if let Some(m) = o.max_resource {
                if m <= o.min_resource {
                    return Err(err(
                        "max_resource",
                        format!(
                            "must be greater than min_resource (got {m} <= {})",
                            o.min_resource
                        ),
                    ));
                }
            }
            Ok(Some(Box::new(AshaPruner {
                min_resource: o.min_resource,
                reduction_factor: o.reduction_factor,
                max_resource: o.max_resource,
            })))
        }
        other => Err(err(
            "kind",
            format!("unknown pruner \"{other}\"; allowed: \"none\", \"median\", \"asha\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(step: u64, v: f64) -> Report {
        (step, BTreeMap::from([("loss".to_string(), v)]))
    }

    fn metric() -> Vec<PruneMetric> {
        vec![PruneMetric {
            name: "loss".into(),
            direction: Direction::Minimize,
        }]
    }

    #[test]
    fn median_prunes_only_above_the_median_after_warmup() {
        let done: Vec<Vec<Report>> = vec![
            vec![r(1, 1.0), r(2, 0.5)],
            vec![r(1, 2.0), r(2, 1.0)],
            vec![r(1, 3.0), r(2, 1.5)],
        ];
        let others: Vec<Curve> = done
            .iter()
            .enumerate()
            .map(|(i, c)| Curve {
                number: i as u64,
                reports: c,
                complete: true,
            })
            .collect();
        let p = MedianPruner {
            warmup_steps: 2,
            min_trials: 3,
        };
        let m = metric();
        let bad = [r(1, 9.0)];
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &bad,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None, "step 1 is in the warm-up");
        let bad = [r(1, 9.0), r(2, 1.2)];
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &bad,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert!(
            p.decide(&ctx).unwrap().contains("median 1"),
            "{:?}",
            p.decide(&ctx)
        );
        // Values in the reason with four significant digits, not seventeen.
        let third = [r(1, 9.0), r(2, 4.0 / 3.0)];
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &third,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(
            p.decide(&ctx).as_deref(),
            Some("loss = 1.333 at step 2 is worse than the median 1 of 3 complete trials")
        );
        let good = [r(1, 9.0), r(2, 0.9)];
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &good,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None);
        let p = MedianPruner {
            warmup_steps: 0,
            min_trials: 4,
        };
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &bad,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None, "too few complete trials");
    }

    #[test]
    fn asha_keeps_the_top_third_at_each_rung() {
        let p = AshaPruner {
            min_resource: 1,
            reduction_factor: 3,
            max_resource: None,
        };
        let m = metric();
        // Five trials reached rung 1 with these values; a sixth arrives.
        let curves: Vec<Vec<Report>> = [1.0, 2.0, 3.0, 4.0, 5.0]
            .iter()
            .map(|v| vec![r(1, *v)])
            .collect();
        let others: Vec<Curve> = curves
            .iter()
            .enumerate()
            .map(|(i, c)| Curve {
                number: i as u64,
                reports: c,
                complete: false,
            })
            .collect();
        // 6 at the rung -> keep 2: 1.0 and the newcomer only if < 2.0.
        for (v, pruned) in [(0.5, false), (1.5, false), (2.5, true), (9.0, true)] {
            let mine = [r(1, v)];
            let ctx = PruneContext {
                trial: Curve {
                    number: 9,
                    reports: &mine,
                    complete: false,
                },
                others: &others,
                metrics: &m,
            };
            assert_eq!(p.decide(&ctx).is_some(), pruned, "value {v}");
        }
        // The first trial at a rung is always the best there.
        let mine = [r(1, 100.0)];
        let ctx = PruneContext {
            trial: Curve {
                number: 0,
                reports: &mine,
                complete: false,
            },
            others: &[],
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None);
        // A report between rungs decides nothing new.
        let mine = [r(1, 0.1), r(2, 100.0)];
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &mine,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None);
        assert_eq!(p.rungs_up_to(30), vec![1, 3, 9, 27]);
        let capped = AshaPruner {
            min_resource: 1,
            reduction_factor: 3,
            max_resource: Some(9),
        };
        assert_eq!(capped.rungs_up_to(30), vec![1, 3]);
    }

    #[test]
    fn asha_orders_by_nondominated_rank_with_two_metrics() {
        let p = AshaPruner {
            min_resource: 1,
            reduction_factor: 2,
            max_resource: None,
        };
        let m = vec![
            PruneMetric {
                name: "a".into(),
                direction: Direction::Minimize,
            },
            PruneMetric {
                name: "b".into(),
                direction: Direction::Maximize,
            },
        ];
        let rep = |a: f64, b: f64| {
            vec![(
                1u64,
                BTreeMap::from([("a".to_string(), a), ("b".to_string(), b)]),
            )]
        };
        let curves = [rep(1.0, 1.0), rep(2.0, 5.0), rep(3.0, 0.0)];
        let others: Vec<Curve> = curves
            .iter()
            .enumerate()
            .map(|(i, c)| Curve {
                number: i as u64,
                reports: c,
                complete: false,
            })
            .collect();
        // Front: (1,1), (2,5); a dominated newcomer (2.5, 0.5) is pruned, a front point is kept.
        let dominated = rep(2.5, 0.5);
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &dominated,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert!(p.decide(&ctx).is_some());
        let front = rep(0.5, 0.5);
        let ctx = PruneContext {
            trial: Curve {
                number: 9,
                reports: &front,
                complete: false,
            },
            others: &others,
            metrics: &m,
        };
        assert_eq!(p.decide(&ctx), None);
    }

    #[test]
    fn quality_gate_allows_the_grace() {
        let g = QualityGate {
            constraints: vec![Constraint {
                metric: "delta".into(),
                min: None,
                max: Some(0.05),
            }],
            grace: 0.01,
        };
        let v = |x: f64| BTreeMap::from([("delta".to_string(), x)]);
        assert_eq!(g.check(1, &v(0.055)), None);
        assert!(g.check(1, &v(0.07)).unwrap().contains("delta = 0.07"));
        assert_eq!(g.check(1, &BTreeMap::new()), None);
    }

    #[test]
    fn build_validates_options() {
        assert!(build("none", &PrunerOptions::default()).unwrap().is_none());
        assert_eq!(
            build("asha", &PrunerOptions::default())
                .unwrap()
                .unwrap()
                .name(),
            "asha"
        );
        let bad = PrunerOptions {
            reduction_factor: 1,
            ..Default::default()
        };
        assert_eq!(build("asha", &bad).unwrap_err().0, "reduction_factor");
        assert_eq!(
            build("hyperband", &PrunerOptions::default()).unwrap_err().0,
            "kind"
        );
    }
}
