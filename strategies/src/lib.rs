//! # quantune-strategies
//!
//! The search side of quantune: what a study may try (`SearchSpace`), how the next trial is
//! chosen (`Strategy` implementations: random, scrambled Sobol, grid), the Pareto maths the
//! leaderboard uses (non-dominated sorting, hypervolume), and parameter importance
//! (PED-ANOVA, [`importance`]).
//!
//! The crate is pure: no I/O, no clocks, no threads. A strategy gets the whole trial history in a
//! [`SuggestContext`] and derives its randomness from the study seed and the trial number, so a
//! restarted daemon suggests exactly what it would have.
//!
//! ```
//! use quantune_strategies::{registry, Domain, Param, SearchSpace, SuggestContext};
//!
//! let space = SearchSpace::new(vec![
//!     Param::new("learning_rate", Domain::Float { low: 1e-5, high: 1e-3, log: true }),
//!     Param::new("batch_size", Domain::IntValues { values: vec![8, 16, 32] }),
//! ]).unwrap();
//! let strategy = registry::build("sobol", &registry::StrategyOptions::default()).unwrap();
//! let ctx = SuggestContext::new(&space, 0, 42);
//! let params = strategy.suggest(&ctx).unwrap();
//! assert!(space.contains(&params));
//! ```

#![warn(missing_docs)]

pub mod acquisition;
pub mod bayes;
pub mod conditional;
pub mod display;
pub mod encoding;
pub mod gp;
pub mod grid;
pub mod history;
pub mod importance;
pub mod input_warp;
pub mod objective;
pub mod pareto;
pub mod pruner;
pub mod random;
pub mod registry;
pub mod restrict;
pub mod sobol;
pub mod space;
pub mod strategy;
pub mod tpe;
pub mod trust_region;
pub mod warp;

#[cfg(test)]
mod test_support;

pub use objective::{Constraint, Direction, Objective};
pub use space::{Condition, Domain, Param, ParamValue, Params, SearchSpace};
pub use strategy::{
    Metrics, Observation, Outcome, Strategy, StrategyError, SuggestContext, Suggestion,
};
