//! Suggestions for a worker that cannot run every choice (hardware-aware choices: `fp8` needs a
//! GPU of compute capability 8.9 or newer, say). The strategy is asked on the space without the
//! excluded choices, with the trials that used them left out of its history and pending list:
//! every strategy then honours the restriction by construction, and stays deterministic in
//! (history, pending, trial number, exclusions).
//!
//! Why not keep those trials in the model: their points are outside the restricted space, so
//! the encodings (one-hot blocks, unit cells) cannot represent them; and what was measured on
//! hardware that could run the choice (latency above all) says little about this worker.

use crate::space::{same_choice, Domain, Param, ParamValue, Params, SearchSpace};
use crate::strategy::{Observation, Strategy, StrategyError, SuggestContext, Suggestion};
use std::collections::BTreeMap;

/// Categorical choices a worker cannot run, per parameter name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exclusions {
    excluded: BTreeMap<String, Vec<ParamValue>>,
}

impl Exclusions {
    /// No exclusions.
    pub fn none() -> Self {
        Self::default()
    }

    /// Excludes `choice` of parameter `param`.
    pub fn exclude(&mut self, param: &str, choice: ParamValue) {
        let list = self.excluded.entry(param.to_string()).or_default();
        if !list.iter().any(|c| same_choice(c, &choice)) {
            list.push(choice);
        }
    }

    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.excluded.values().all(Vec::is_empty)
    }

    /// Whether `params` uses no excluded choice.
    pub fn allows(&self, params: &Params) -> bool {
        self.excluded.iter().all(|(name, bad)| {
            params
                .get(name)
                .is_none_or(|v| !bad.iter().any(|b| same_choice(b, v)))
        })
    }

    /// The excluded choices, per parameter.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<ParamValue>)> {
        self.excluded.iter()
    }

    /// `space` without the excluded choices. Fails (naming the parameter) when every choice of
    /// a parameter is excluded: nothing in the space can run on this worker.
    pub fn restrict(&self, space: &SearchSpace) -> Result<SearchSpace, String> {
        let params = space
            .params()
            .iter()
            .map(|p| match (&p.domain, self.excluded.get(&p.name)) {
                (Domain::Categorical { choices }, Some(bad)) if !bad.is_empty() => {
                    let kept: Vec<ParamValue> = choices
                        .iter()
                        .filter(|c| !bad.iter().any(|b| same_choice(b, c)))
                        .cloned()
                        .collect();
                    if kept.is_empty() {
                        return Err(format!(
                            "{}: no choice can run on this worker (all of {} are excluded)",
                            p.name,
                            choices
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    Ok(Param::new(
                        p.name.clone(),
                        Domain::Categorical { choices: kept },
                    ))
                }
                _ => Ok(p.clone()),
            })
            .collect::<Result<Vec<_>, String>>()?;
        space.with_domains(params)
    }
}

/// Asks `strategy` for a suggestion that uses no excluded choice (see the module comment).
/// With no exclusions this is exactly [`Strategy::suggest_with_note`].
pub fn suggest_excluding(
    strategy: &dyn Strategy,
    ctx: &SuggestContext<'_>,
    exclusions: &Exclusions,
) -> Result<Suggestion, StrategyError> {
    if exclusions.is_empty() {
        return strategy.suggest_with_note(ctx);
    }
    let space = exclusions
        .restrict(ctx.space)
        .map_err(StrategyError::Invalid)?;
    let history: Vec<Observation> = ctx
        .history
        .iter()
        .filter(|o| exclusions.allows(&o.params))
        .cloned()
        .collect();
    let pending: Vec<Params> = ctx
        .pending
        .iter()
        .filter(|p| exclusions.allows(p))
        .cloned()
        .collect();
    let restricted = SuggestContext {
        space: &space,
        history: &history,
        pending: &pending,
        ..ctx.clone()
    };
    strategy.suggest_with_note(&restricted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{self, StrategyOptions};
    use crate::strategy::Outcome;
    use crate::{Direction, Objective};
    use std::sync::Arc;

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param::new(
                "lr",
                Domain::Float {
                    low: 1e-5,
                    high: 1e-2,
                    log: true,
                },
            ),
            Param::new(
                "q",
                Domain::Categorical {
                    choices: ["bf16", "int8", "int4", "fp8"]
                        .map(|s| ParamValue::Str(s.into()))
                        .to_vec(),
                },
            ),
        ])
        .unwrap()
    }

    fn no_fp8() -> Exclusions {
        let mut e = Exclusions::none();
        e.exclude("q", ParamValue::Str("fp8".into()));
        e
    }

    /// A history in which fp8 is by far the best choice.
    fn history(space: &SearchSpace, n: u64) -> Vec<Observation> {
        let names = ["bf16", "int8", "int4", "fp8"];
        (0..n)
            .map(|i| {
                let q = names[(i % 4) as usize];
                let lr = 1e-4 * (1.0 + i as f64 / n as f64);
                let params: Params = [
                    ("lr".to_string(), ParamValue::Float(lr)),
                    ("q".to_string(), ParamValue::Str(q.into())),
                ]
                .into_iter()
                .collect();
                assert!(space.contains(&params));
                let latency = if q == "fp8" {
                    1.0
                } else {
                    5.0 + i as f64 * 0.01
                };
                Observation {
                    number: i,
                    params: Arc::new(params),
                    outcome: Outcome::Complete,
                    metrics: Arc::new([("latency_ms".to_string(), latency)].into_iter().collect()),
                }
            })
            .collect()
    }

    #[test]
    fn every_strategy_avoids_excluded_choices_even_when_they_look_best() {
        let space = space();
        let objectives = [Objective {
            metric: "latency_ms".into(),
            direction: Direction::Minimize,
        }];
        let hist = history(&space, 24);
        let pending = vec![(*hist[3].params).clone()]; // an fp8 trial running elsewhere
        for kind in ["random", "sobol", "grid", "tpe", "bayes"] {
            let s = registry::build(kind, &StrategyOptions::default()).unwrap();
            for n in 24..40 {
                let ctx = SuggestContext {
                    space: &space,
                    objectives: &objectives,
                    constraints: &[],
                    history: &hist,
                    pending: &pending,
                    trial_number: n,
                    seed: 7,
                    max_trials: None,
                };
                let got = match suggest_excluding(s.as_ref(), &ctx, &no_fp8()) {
                    // The grid's 15 non-fp8 points are all in the history.
                    Err(StrategyError::Exhausted { total: 15 }) if kind == "grid" => continue,
                    other => other.unwrap(),
                };
                assert!(space.contains(&got.params), "{kind}: {:?}", got.params);
                assert_ne!(
                    got.params["q"],
                    ParamValue::Str("fp8".into()),
                    "{kind} proposed fp8 at trial {n}"
                );
                // Deterministic: the same call gives the same point.
                let again = suggest_excluding(s.as_ref(), &ctx, &no_fp8()).unwrap();
                assert_eq!(got, again, "{kind}");
            }
        }
    }

    #[test]
    fn without_exclusions_the_strategy_is_asked_as_is() {
        let space = space();
        let s = registry::build("tpe", &StrategyOptions::default()).unwrap();
        let hist = history(&space, 12);
        let ctx = SuggestContext {
            history: &hist,
            ..SuggestContext::new(&space, 12, 3)
        };
        assert_eq!(
            suggest_excluding(s.as_ref(), &ctx, &Exclusions::none()).unwrap(),
            s.suggest_with_note(&ctx).unwrap()
        );
    }

    #[test]
    fn excluding_every_choice_is_an_error_naming_the_parameter() {
        let mut all = Exclusions::none();
        for c in ["bf16", "int8", "int4", "fp8"] {
            all.exclude("q", ParamValue::Str(c.into()));
        }
        let space = space();
        let s = registry::build("random", &StrategyOptions::default()).unwrap();
        let err =
            suggest_excluding(s.as_ref(), &SuggestContext::new(&space, 0, 1), &all).unwrap_err();
        assert!(err.to_string().starts_with("q: no choice can run"), "{err}");
        assert!(all.restrict(&space).is_err());
        assert!(!all.allows(&history(&space, 1)[0].params));
        assert!(no_fp8().allows(&history(&space, 1)[0].params));
    }
}
