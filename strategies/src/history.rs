//! The finished trials as numbers the model-based strategies work with: unit-cube points,
//! objective losses, constraint values and whether each trial was feasible.
//!
//! Both `bayes` and `tpe` start here, so they agree on what a failed, pruned or infeasible
//! trial means. The history is put in trial-number order first, so the models do not depend on
//! the order in which trials happened to finish.

use crate::objective::{Constraint, Objective};
use crate::space::{Domain, ParamValue, Params, SearchSpace};
use crate::strategy::{Observation, Outcome, SuggestContext};

/// What a finished trial tells a model.
#[derive(Clone, Debug, PartialEq)]
pub enum Evidence {
    /// Every objective (and constraint) metric is known; `feasible` says whether the
    /// constraints held. Constraint-violating completions arrive as `Outcome::Infeasible` with
    /// their metrics and land here with `feasible == false`.
    Measured {
        /// One loss per objective (smaller is better).
        losses: Vec<f64>,
        /// One value per constraint (`None` where the metric is missing).
        constraints: Vec<Option<f64>>,
        /// Whether every constraint held.
        feasible: bool,
    },
    /// Failed, pruned, or declared infeasible without metrics: the point is known to be bad,
    /// but not by how much.
    Bad,
}

/// One finished trial, ready for a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The trial number.
    pub number: u64,
    /// Its unit-cube coordinates (`space.dim()` of them).
    pub unit: Vec<f64>,
    /// What it told us.
    pub evidence: Evidence,
}

/// The usable history of a suggestion context: trials whose parameters still belong to the
/// space (a study's space never changes, but an imported history might not match), sorted by
/// trial number.
pub fn points(ctx: &SuggestContext<'_>) -> Vec<Point> {
    let mut order: Vec<&Observation> = ctx.history.iter().collect();
    order.sort_by_key(|o| o.number);
    order
        .into_iter()
        .filter_map(|o| {
            let unit = unit_of(ctx.space, &o.params)?;
            Some(Point {
                number: o.number,
                unit,
                evidence: evidence(o, ctx.objectives, ctx.constraints),
            })
        })
        .collect()
}

/// The unit-cube coordinates of each pending trial (those outside the space are skipped).
pub fn pending_units(ctx: &SuggestContext<'_>) -> Vec<Vec<f64>> {
    ctx.pending
        .iter()
        .filter_map(|p| unit_of(ctx.space, p))
        .collect()
}

/// [`SearchSpace::to_unit`], with a fast path for the usual case: `Params` is a map sorted by
/// name, and so is the space, so the two can be walked side by side without lookups.
pub fn unit_of(space: &SearchSpace, params: &Params) -> Option<Vec<f64>> {
    if params.len() == space.dim() && !space.is_conditional() {
        let mut out = Vec::with_capacity(space.dim());
        for (p, (name, value)) in space.params().iter().zip(params) {
            if p.name != *name {
                return space.to_unit(params);
            }
            // Linear floats are most parameters of most spaces: the same formula as
            // `Domain::to_unit`, without its general checks.
            let u = match (&p.domain, value) {
                (
                    Domain::Float {
                        low,
                        high,
                        log: false,
                    },
                    ParamValue::Float(x),
                ) if *low <= *x && *x <= *high && (high - low).is_finite() => {
                    ((x - low) / (high - low)).clamp(0.0, 1.0)
                }
                (domain, value) => domain.to_unit(value)?,
            };
            out.push(u);
        }
        return Some(out);
    }
    space.to_unit(params)
}

/// Turns one observation into evidence.
fn evidence(o: &Observation, objectives: &[Objective], constraints: &[Constraint]) -> Evidence {
    let measurable = matches!(o.outcome, Outcome::Complete | Outcome::Infeasible);
    if !measurable || objectives.is_empty() {
        return Evidence::Bad;
    }
    let losses: Option<Vec<f64>> = objectives
        .iter()
        .map(|obj| {
            o.metrics
                .get(&obj.metric)
                .copied()
                .filter(|v| v.is_finite())
                .map(|v| obj.loss(v))
        })
        .collect();
    let Some(losses) = losses else {
        return Evidence::Bad;
    };
    let values: Vec<Option<f64>> = constraints
        .iter()
        .map(|c| o.metrics.get(&c.metric).copied().filter(|v| v.is_finite()))
        .collect();
    let satisfied = constraints
        .iter()
        .zip(&values)
        .all(|(c, v)| v.is_some_and(|v| c.violation(v) == 0.0));
    Evidence::Measured {
        losses,
        constraints: values,
        feasible: satisfied && o.outcome == Outcome::Complete,
    }
}

/// Whether two parameter sets are the same point (used to avoid proposing a trial twice).
pub fn same_params(a: &Params, b: &Params) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && match (va, vb) {
                    (ParamValue::Float(x), ParamValue::Float(y)) => x == y,
                    _ => va == vb,
                }
        })
}

/// The space-filling suggestion model-based strategies make before (and instead of) a model:
/// trial n's point of the study's scrambled Sobol sequence, with `note` saying why, if a fallback.
pub fn space_filling(
    ctx: &SuggestContext<'_>,
    note: Option<String>,
) -> crate::strategy::Suggestion {
    crate::strategy::Suggestion {
        params: ctx
            .space
            .from_unit(&crate::sobol::SobolStrategy::unit_point(
                ctx.seed,
                ctx.trial_number,
                ctx.space.dim(),
            )),
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::Direction;
    use crate::space::Param;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn evidence_by_outcome() {
        let space = SearchSpace::new(vec![Param::new(
            "x",
            Domain::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        )])
        .unwrap();
        let objectives = [Objective {
            metric: "acc".into(),
            direction: Direction::Maximize,
        }];
        let constraints = [Constraint {
            metric: "mem".into(),
            min: None,
            max: Some(4.0),
        }];
        let obs = |number, outcome, metrics: &[(&str, f64)]| Observation {
            number,
            params: Arc::new([("x".to_string(), ParamValue::Float(0.25))].into()),
            outcome,
            metrics: Arc::new(
                metrics
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect::<BTreeMap<_, _>>(),
            ),
        };
        let history = vec![
            obs(3, Outcome::Infeasible, &[("acc", 0.9), ("mem", 5.0)]),
            obs(1, Outcome::Complete, &[("acc", 0.8), ("mem", 3.0)]),
            obs(2, Outcome::Failed, &[]),
            obs(4, Outcome::Infeasible, &[]),
            obs(5, Outcome::Complete, &[("mem", 3.0)]),
        ];
        let mut ctx = SuggestContext::new(&space, 6, 0);
        ctx.objectives = &objectives;
        ctx.constraints = &constraints;
        ctx.history = &history;
        let pts = points(&ctx);
        assert_eq!(
            pts.iter().map(|p| p.number).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(pts[0].unit, vec![0.25]);
        assert_eq!(
            pts[0].evidence,
            Evidence::Measured {
                losses: vec![-0.8],
                constraints: vec![Some(3.0)],
                feasible: true
            }
        );
        assert_eq!(pts[1].evidence, Evidence::Bad);
        assert_eq!(
            pts[2].evidence,
            Evidence::Measured {
                losses: vec![-0.9],
                constraints: vec![Some(5.0)],
                feasible: false
            }
        );
        assert_eq!(pts[3].evidence, Evidence::Bad);
        assert_eq!(pts[4].evidence, Evidence::Bad);
    }

    proptest::proptest! {
        #[test]
        fn fast_path_matches_to_unit(space in crate::test_support::arb_space(), seed in proptest::prelude::any::<u64>()) {
            let p = crate::sobol::SobolStrategy::unit_point(seed, 3, space.dim());
            let params = space.from_unit(&p);
            proptest::prop_assert_eq!(unit_of(&space, &params), space.to_unit(&params));
        }
    }
}
