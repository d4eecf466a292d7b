//! The one place that maps a study file's `strategy.kind` to an implementation.

use crate::bayes::BayesStrategy;
use crate::grid::GridStrategy;
use crate::random::RandomStrategy;
use crate::sobol::SobolStrategy;
use crate::strategy::Strategy;
use crate::tpe::TpeStrategy;

/// Options from the study's `[strategy]` table that strategies may use.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyOptions {
    /// Space-filling points before a model is used (model-based strategies).
    pub initial_trials: u64,
    /// Values per float parameter in a grid.
    pub grid_points: u64,
    /// `bayes` only: a metric the trials report that measures their cost (see
    /// [`BayesStrategy::cost_metric`]).
    pub cost_metric: Option<String>,
    /// `bayes` only: `strategy.measured_noise` ([`BayesStrategy::measured_noise`]); `None`
    /// keeps the default (on).
    pub measured_noise: Option<bool>,
    /// `bayes` only: `strategy.input_warp` ([`BayesStrategy::input_warp`]); `None` keeps the
    /// default (off).
    pub input_warp: Option<bool>,
    /// `bayes` only: `strategy.trust_region` ([`BayesStrategy::trust_region`]); `None` keeps
    /// the default (on).
    pub trust_region: Option<bool>,
}

impl StrategyOptions {
    /// The `[strategy]` keys these options set that only `bayes` reads, by their names in a
    /// study file.
    pub fn bayes_only_keys(&self) -> Vec<&'static str> {
        [
            ("cost_metric", self.cost_metric.is_some()),
            ("measured_noise", self.measured_noise.is_some()),
            ("input_warp", self.input_warp.is_some()),
            ("trust_region", self.trust_region.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

impl Default for StrategyOptions {
    fn default() -> Self {
        StrategyOptions {
            initial_trials: 8,
            grid_points: 5,
            cost_metric: None,
            measured_noise: None,
            input_warp: None,
            trust_region: None,
        }
    }
}

/// Every kind a study file may name, available or not.
pub const KINDS: &[&str] = &["random", "sobol", "grid", "tpe", "bayes"];

/// The kinds this version implements (a subset of [`KINDS`]).
pub const AVAILABLE_KINDS: &[&str] = &["random", "sobol", "grid", "tpe", "bayes"];

/// The kind used when a study names none: Gaussian-process Bayesian optimization.
pub const DEFAULT_KIND: &str = "bayes";

/// Builds the strategy for `kind`; the error says what is allowed.
pub fn build(kind: &str, options: &StrategyOptions) -> Result<Box<dyn Strategy>, String> {
    let allowed = AVAILABLE_KINDS.join(", ");
    if let Some(key) = options
        .bayes_only_keys()
        .first()
        .filter(|_| kind != "bayes")
    {
        return Err(format!(
            "strategy.{key} is used only by strategy.kind = \"bayes\" (this study's is {kind:?}); remove it or use bayes"
        ));
    }
    match kind {
        "random" => Ok(Box::new(RandomStrategy)),
        "sobol" => Ok(Box::new(SobolStrategy)),
        "tpe" => Ok(Box::new(TpeStrategy {
            initial_trials: options.initial_trials,
        })),
        "bayes" => {
            let default = BayesStrategy::default();
            Ok(Box::new(BayesStrategy {
                initial_trials: options.initial_trials,
                cost_metric: options.cost_metric.clone(),
                measured_noise: options.measured_noise.unwrap_or(default.measured_noise),
                input_warp: options.input_warp.unwrap_or(default.input_warp),
                trust_region: options.trust_region.unwrap_or(default.trust_region),
            }))
        }
        "grid" => {
            if options.grid_points < 2 {
                return Err(format!(
                    "strategy.grid_points must be >= 2 (got {})",
                    options.grid_points
                ));
            }
            Ok(Box::new(GridStrategy {
                grid_points: options.grid_points,
            }))
        }
        k if KINDS.contains(&k) => Err(format!(
            "strategy.kind = {k:?} is not available yet in this version; use one of: {allowed}"
        )),
        k => Err(format!(
            "unknown strategy.kind = {k:?}; use one of: {allowed}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_available_kinds() {
        let options = StrategyOptions::default();
        for kind in AVAILABLE_KINDS {
            assert_eq!(build(kind, &options).unwrap().name(), *kind);
        }
        assert_eq!(build(DEFAULT_KIND, &options).unwrap().name(), DEFAULT_KIND);
        assert!(AVAILABLE_KINDS.iter().all(|k| KINDS.contains(k)));
    }

    #[test]
    fn explains_what_is_allowed() {
        let options = StrategyOptions::default();
        assert_eq!(build(DEFAULT_KIND, &options).unwrap().name(), "bayes");
        assert_eq!(
            build("annealing", &options).unwrap_err(),
            r#"unknown strategy.kind = "annealing"; use one of: random, sobol, grid, tpe, bayes"#
        );
        let one = StrategyOptions {
            grid_points: 1,
            ..options.clone()
        };
        assert_eq!(
            build("grid", &one).unwrap_err(),
            "strategy.grid_points must be >= 2 (got 1)"
        );
        assert!(build("random", &one).is_ok());
        let two = StrategyOptions {
            grid_points: 2,
            ..options
        };
        assert!(build("grid", &two).is_ok());
    }

    #[test]
    fn bayes_only_keys_are_refused_for_other_kinds() {
        let warp = StrategyOptions {
            input_warp: Some(true),
            trust_region: Some(false),
            ..StrategyOptions::default()
        };
        assert_eq!(warp.bayes_only_keys(), ["input_warp", "trust_region"]);
        assert_eq!(
            build("tpe", &warp).unwrap_err(),
            r#"strategy.input_warp is used only by strategy.kind = "bayes" (this study's is "tpe"); remove it or use bayes"#
        );
        assert!(build("bayes", &warp).is_ok());
        assert!(StrategyOptions::default().bayes_only_keys().is_empty());
    }
}
