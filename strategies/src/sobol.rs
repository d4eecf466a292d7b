//! Owen-scrambled Sobol points (sobol_burley): trial n gets point n of the study's sequence.

use crate::space::Params;
use crate::strategy::{mix, Strategy, StrategyError, SuggestContext};

/// Points of sobol_burley's sequence per block (its maximum sequence length).
const BLOCK: u64 = 1 << 16;

/// Dimensions sobol_burley provides.
const DIMS: u64 = sobol_burley::NUM_DIMENSIONS as u64;

/// Salt separating the Sobol scramble from other uses of the study seed.
const SALT: u64 = 0x736f_626f_6c5f_7174;

/// A scrambled Sobol sequence: trial `n` gets point `n` of a sequence fixed by the study seed,
/// so the first `2^k` trials are stratified in every coordinate (and in the low-dimensional
/// projections the Sobol construction covers).
///
/// sobol_burley's sequences have at most 2^16 points and 256 dimensions. Beyond that the
/// sequence continues with independently scrambled copies: trial `n` uses point `n mod 2^16`
/// of block `n / 2^16`, and dimension `d` uses dimension `d mod 256` of copy `d / 256`, each
/// block and copy with its own seed (Burley's "padding"). Stateless and deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SobolStrategy;

impl SobolStrategy {
    /// The unit-cube point of trial `trial_number` of the sequence for `seed`, in `dim`
    /// dimensions (coordinates in [0, 1)).
    pub fn unit_point(seed: u64, trial_number: u64, dim: usize) -> Vec<f64> {
        let key = mix(seed ^ SALT);
        let block = trial_number / BLOCK;
        let index = (trial_number % BLOCK) as u32;
        let block_key = mix(key ^ block);
        (0..dim as u64)
            .map(|d| {
                let copy = d / DIMS;
                let seed32 = if copy == 0 {
                    block_key as u32
                } else {
                    mix(block_key ^ copy) as u32
                };
                f64::from(sobol_burley::sample(index, (d % DIMS) as u32, seed32))
            })
            .collect()
    }
}

impl Strategy for SobolStrategy {
    fn name(&self) -> &'static str {
        "sobol"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, StrategyError> {
        let u = Self::unit_point(ctx.seed, ctx.trial_number, ctx.space.dim());
        Ok(ctx.space.from_unit(&u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Domain, Param, ParamValue, SearchSpace};
    use crate::test_support::arb_space;
    use proptest::prelude::{any, prop_assert, proptest};

    #[test]
    fn first_points_are_stratified() {
        for seed in [0, 1, 42, u64::MAX] {
            for dim in [1usize, 3, 7] {
                for m in [8u64, 16, 64] {
                    for d in 0..dim {
                        let mut seen = vec![false; m as usize];
                        for n in 0..m {
                            let u = SobolStrategy::unit_point(seed, n, dim)[d];
                            assert!((0.0..1.0).contains(&u));
                            let cell = (u * m as f64) as usize;
                            assert!(!seen[cell], "seed {seed} dim {d}: cell {cell} twice in {m}");
                            seen[cell] = true;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn first_points_cover_a_discrete_parameter() {
        let space = SearchSpace::new(vec![Param::new(
            "bits",
            Domain::Int {
                low: 1,
                high: 8,
                step: 1,
                log: false,
            },
        )])
        .unwrap();
        let mut values: Vec<i64> = (0..8)
            .map(|t| {
                let p = SobolStrategy
                    .suggest(&SuggestContext::new(&space, t, 5))
                    .unwrap();
                let ParamValue::Int(v) = p["bits"] else {
                    panic!()
                };
                v
            })
            .collect();
        values.sort();
        assert_eq!(values, (1..=8).collect::<Vec<_>>());
    }

    #[test]
    fn deterministic_and_seeded() {
        let space = SearchSpace::new(vec![
            Param::new(
                "a",
                Domain::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
            Param::new(
                "b",
                Domain::Float {
                    low: 1e-4,
                    high: 1.0,
                    log: true,
                },
            ),
        ])
        .unwrap();
        let s = SobolStrategy;
        assert_eq!(s.name(), "sobol");
        let a = s.suggest(&SuggestContext::new(&space, 9, 1)).unwrap();
        assert_eq!(a, s.suggest(&SuggestContext::new(&space, 9, 1)).unwrap());
        assert_ne!(a, s.suggest(&SuggestContext::new(&space, 10, 1)).unwrap());
        assert_ne!(a, s.suggest(&SuggestContext::new(&space, 9, 2)).unwrap());
    }

    #[test]
    fn beyond_the_sequence_limits() {
        // More than 2^16 trials and more than 256 dimensions continue with fresh scrambles.
        let far = SobolStrategy::unit_point(3, (1 << 16) + 5, 600);
        assert_eq!(far.len(), 600);
        assert!(far.iter().all(|u| (0.0..1.0).contains(u)));
        assert_ne!(far, SobolStrategy::unit_point(3, 5, 600));
        assert_ne!(far[0], far[256]);
        let huge = SobolStrategy::unit_point(3, u64::MAX, 2);
        assert!(huge.iter().all(|u| (0.0..1.0).contains(u)));
        // Dimension 256 is itself stratified, like every copy.
        let mut seen = [false; 16];
        for n in 0..16 {
            let cell = (SobolStrategy::unit_point(8, n, 300)[290] * 16.0) as usize;
            assert!(!seen[cell]);
            seen[cell] = true;
        }
    }

    proptest! {
        #[test]
        fn suggestions_lie_in_space(space in arb_space(), seed in any::<u64>(), t in any::<u64>()) {
            let p = SobolStrategy.suggest(&SuggestContext::new(&space, t, seed)).unwrap();
            prop_assert!(space.contains(&p));
            let p = SobolStrategy.suggest(&SuggestContext::new(&space, t % 64, seed)).unwrap();
            prop_assert!(space.contains(&p));
        }
    }
}
