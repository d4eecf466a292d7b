//! The `Strategy` trait every sampler implements, and the history it is given.

use crate::objective::{Constraint, Objective};
use crate::space::{Params, SearchSpace};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// How a finished trial ended, as far as a strategy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finished with every objective and constraint metric.
    Complete,
    /// Stopped early by a pruner.
    Pruned,
    /// Failed (after its retries).
    Failed,
    /// The configuration was declared infeasible by the trial.
    Infeasible,
}

/// Final metrics by name.
pub type Metrics = BTreeMap<String, f64>;

/// One finished trial. Its maps are shared (`Arc`), so that a daemon's history of 100,000
/// trials points at the trial records' own maps instead of holding a second copy of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The trial number.
    pub number: u64,
    /// Its parameters.
    pub params: Arc<Params>,
    /// How it ended.
    pub outcome: Outcome,
    /// Its final metrics (empty unless complete).
    pub metrics: Arc<Metrics>,
}

/// Everything a strategy may look at when it suggests the next trial.
#[derive(Clone, Debug)]
pub struct SuggestContext<'a> {
    /// The space to suggest from.
    pub space: &'a SearchSpace,
    /// The study's objectives (at least one for a real study; may be empty in tests).
    pub objectives: &'a [Objective],
    /// The study's constraints.
    pub constraints: &'a [Constraint],
    /// Finished trials (the daemon passes them in the order they finished; model-based
    /// strategies sort them by trial number, so the order does not matter).
    pub history: &'a [Observation],
    /// Parameters of trials queued or running now.
    pub pending: &'a [Params],
    /// The number of the trial being suggested (0-based); with `seed` it fixes the randomness.
    pub trial_number: u64,
    /// The study's seed.
    pub seed: u64,
    /// How many trials the study runs in all, when it says (`budget.max_trials`): lets a
    /// strategy plan over the budget (cost cooling in `bayes`).
    pub max_trials: Option<u64>,
}

impl<'a> SuggestContext<'a> {
    /// A context with no objectives, constraints, history or pending trials.
    pub fn new(space: &'a SearchSpace, trial_number: u64, seed: u64) -> Self {
        SuggestContext {
            space,
            objectives: &[],
            constraints: &[],
            history: &[],
            pending: &[],
            trial_number,
            seed,
            max_trials: None,
        }
    }

    /// The random generator for this suggestion: a function of (seed, trial number, stream)
    /// only, so the same trial of the same study always draws the same numbers. `stream`
    /// separates independent uses within one strategy.
    pub fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(
            mix(mix(self.seed ^ 0x5175_616e_7475_6e65) ^ self.trial_number) ^ stream,
        )
    }
}

/// SplitMix64 finalizer: decorrelates nearby seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Why a strategy could not suggest.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategyError {
    /// Every point of a finite design has been handed out (grid): the study is done.
    Exhausted {
        /// How many points the design has.
        total: u64,
    },
    /// The strategy is misconfigured for this space.
    Invalid(String),
}

impl fmt::Display for StrategyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategyError::Exhausted { total } => {
                write!(f, "all {total} points of the design have been tried")
            }
            StrategyError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StrategyError {}

/// A suggestion and, when the strategy did something other than its normal method, why.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    /// The parameters of the next trial.
    pub params: Params,
    /// Why the strategy fell back (e.g. `bayes` could not fit its model and used a
    /// space-filling point); `None` for a normal suggestion. The crate does no I/O: the caller
    /// logs it.
    pub note: Option<String>,
}

/// A way to choose the next trial's parameters from the history.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// The name used in `strategy.kind`.
    fn name(&self) -> &'static str;

    /// Suggests parameters for trial `ctx.trial_number`. Must be deterministic in `ctx` and
    /// return a point inside `ctx.space`.
    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, StrategyError>;

    /// [`Strategy::suggest`] with a note on any fallback, for the caller to log. The default
    /// has no note; model-based strategies override it (and their `suggest` drops the note).
    fn suggest_with_note(&self, ctx: &SuggestContext<'_>) -> Result<Suggestion, StrategyError> {
        Ok(Suggestion {
            params: self.suggest(ctx)?,
            note: None,
        })
    }
}
