//! Grid search: every combination of values, visited in a seeded random order.

use crate::space::{Params, SearchSpace};
use crate::strategy::{mix, Strategy, StrategyError, SuggestContext};

/// Salt separating the grid order from other uses of the study seed.
const SALT: u64 = 0x6772_6964_5f71_746e;

/// Feistel rounds of the index permutation.
const ROUNDS: u64 = 6;

/// Every combination of the parameters' values (floats get `grid_points` evenly spaced values,
/// log-spaced when `log`; discrete domains all their values), visited in an order shuffled by
/// the study seed. Trial `n` gets point `perm(n)`; once every point has been handed out the
/// strategy answers [`StrategyError::Exhausted`].
///
/// The shuffle is a keyed bijection (a Feistel network with cycle walking), so it needs no
/// memory however large the grid is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridStrategy {
    /// Values per float parameter.
    pub grid_points: u64,
}

impl GridStrategy {
    /// The point with (unshuffled) index `index < space.grid_size(grid_points)`, decoded in
    /// mixed radix over the parameters in name order (the last parameter varies fastest).
    pub fn grid_point(&self, space: &SearchSpace, mut index: u64) -> Params {
        let mut params = Params::new();
        for p in space.params().iter().rev() {
            let n = p.domain.cardinality().unwrap_or(self.grid_points).max(1);
            params.insert(
                p.name.clone(),
                p.domain.grid_value(index % n, self.grid_points),
            );
            index /= n;
        }
        params
    }
}

impl Strategy for GridStrategy {
    fn name(&self) -> &'static str {
        "grid"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, StrategyError> {
        if ctx.space.is_conditional() {
            return crate::conditional::ConditionalGrid::new(ctx.space, self.grid_points)?.suggest(
                ctx.space,
                ctx.trial_number,
                ctx.seed,
            );
        }
        let total = ctx.space.grid_size(self.grid_points).ok_or_else(|| {
            StrategyError::Invalid(format!(
                "the grid over this space has more than {} points; use fewer float grid_points, \
                 fewer or coarser integer parameters, or another strategy.kind",
                u64::MAX
            ))
        })?;
        if total == 0 {
            return Err(StrategyError::Invalid(format!(
                "grid search needs grid_points >= 1 (got {})",
                self.grid_points
            )));
        }
        if ctx.trial_number >= total {
            return Err(StrategyError::Exhausted { total });
        }
        let index = permute(ctx.trial_number, total, ctx.seed);
        Ok(self.grid_point(ctx.space, index))
    }
}

/// A bijection of `[0, total)` keyed by `seed`: `index < total` maps to a distinct value below
/// `total`. A balanced Feistel network over the smallest even number of bits that covers
/// `total`, with cycle walking (re-encrypting until the result falls below `total`; expected
/// fewer than 4 rounds of walking). An `index >= total` is first reduced modulo `total`; a
/// `total` of 0 returns `index` unchanged.
pub fn permute(index: u64, total: u64, seed: u64) -> u64 {
    if total == 0 {
        return index;
    }
    let index = index % total;
    if total == 1 {
        return 0;
    }
    let bits = 64 - (total - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let key = mix(seed ^ SALT);
    let keys: [u64; ROUNDS as usize] = std::array::from_fn(|r| mix(key ^ r as u64));
    let encrypt = |x: u64| {
        let (mut l, mut r) = ((x >> half) & mask, x & mask);
        for k in &keys {
            let f = mix(r ^ k) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << half) | r
    };
    let mut x = index;
    loop {
        x = encrypt(x);
        if x < total {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Domain, Param, ParamValue};
    use crate::test_support::{arb_small_grid_space, arb_space};
    use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};
    use std::collections::BTreeSet;

    fn small_space() -> SearchSpace {
        SearchSpace::new(vec![
            Param::new(
                "bits",
                Domain::IntValues {
                    values: vec![4, 8, 16],
                },
            ),
            Param::new(
                "quant",
                Domain::Categorical {
                    choices: vec![
                        ParamValue::Str("int8".into()),
                        ParamValue::Str("fp8".into()),
                    ],
                },
            ),
            Param::new(
                "lr",
                Domain::Float {
                    low: 1e-4,
                    high: 1e-2,
                    log: true,
                },
            ),
        ])
        .unwrap()
    }

    #[test]
    fn covers_every_point_once_then_exhausted() {
        let space = small_space();
        let grid = GridStrategy { grid_points: 3 };
        assert_eq!(grid.name(), "grid");
        let total = space.grid_size(3).unwrap();
        assert_eq!(total, 18);
        for seed in [0, 1, 99] {
            let mut seen = BTreeSet::new();
            for t in 0..total {
                let p = grid.suggest(&SuggestContext::new(&space, t, seed)).unwrap();
                assert!(space.contains(&p));
                assert!(seen.insert(format!("{p:?}")), "duplicate {p:?}");
            }
            assert_eq!(
                grid.suggest(&SuggestContext::new(&space, total, seed)),
                Err(StrategyError::Exhausted { total })
            );
            assert_eq!(
                grid.suggest(&SuggestContext::new(&space, u64::MAX, seed)),
                Err(StrategyError::Exhausted { total })
            );
        }
        // The log-spaced float values are the ends and the geometric midpoint.
        let lrs: BTreeSet<String> = (0..total)
            .map(|i| grid.grid_point(&space, i)["lr"].to_string())
            .collect();
        assert_eq!(lrs.len(), 3);
        assert!(lrs.contains("0.0001") && lrs.contains("0.01"));
    }

    #[test]
    fn order_depends_on_seed() {
        let space = small_space();
        let grid = GridStrategy { grid_points: 3 };
        let order = |seed| -> Vec<Params> {
            (0..18)
                .map(|t| grid.suggest(&SuggestContext::new(&space, t, seed)).unwrap())
                .collect()
        };
        assert_eq!(order(5), order(5));
        assert_ne!(order(5), order(6));
    }

    #[test]
    fn permute_is_a_bijection() {
        for total in (1..300).chain([1023, 1024, 1025, 4096]) {
            for seed in [0, 7, u64::MAX] {
                let mut seen = vec![false; total as usize];
                for i in 0..total {
                    let j = permute(i, total, seed);
                    assert!(j < total);
                    assert!(!seen[j as usize], "total {total} seed {seed}");
                    seen[j as usize] = true;
                }
            }
        }
        for total in [u64::MAX, 1 << 63, (1 << 63) + 1, 3 << 40] {
            for i in [0, 1, total / 2, total - 1] {
                assert!(permute(i, total, 11) < total);
            }
        }
        assert_eq!(permute(5, 0, 1), 5);
        assert_eq!(permute(9, 4, 1), permute(1, 4, 1));
    }

    #[test]
    fn too_large_or_empty_grid_is_invalid() {
        let params = (0..5)
            .map(|i| {
                Param::new(
                    format!("p{i}"),
                    Domain::Int {
                        low: 0,
                        high: 1 << 20,
                        step: 1,
                        log: false,
                    },
                )
            })
            .collect();
        let space = SearchSpace::new(params).unwrap();
        let err = GridStrategy { grid_points: 5 }
            .suggest(&SuggestContext::new(&space, 0, 0))
            .unwrap_err();
        assert!(
            matches!(err, StrategyError::Invalid(ref m) if m.contains("more than")),
            "{err}"
        );
        let err = GridStrategy { grid_points: 0 }
            .suggest(&SuggestContext::new(&small_space(), 0, 0))
            .unwrap_err();
        assert_eq!(
            err,
            StrategyError::Invalid("grid search needs grid_points >= 1 (got 0)".into())
        );
    }

    proptest! {
        #[test]
        fn suggestions_lie_in_space(space in arb_space(), seed in any::<u64>(), t in any::<u64>(), points in 1u64..20) {
            let grid = GridStrategy { grid_points: points };
            match grid.suggest(&SuggestContext::new(&space, t, seed)) {
                Ok(p) => prop_assert!(space.contains(&p)),
                Err(StrategyError::Exhausted { total }) => prop_assert!(t >= total),
                Err(StrategyError::Invalid(_)) => prop_assert!(space.grid_size(points).is_none()),
            }
        }

        #[test]
        fn small_grids_are_covered_exactly(space in arb_small_grid_space(), seed in any::<u64>(), points in 1u64..4) {
            let grid = GridStrategy { grid_points: points };
            let total = space.grid_size(points).unwrap();
            let mut seen = BTreeSet::new();
            for t in 0..total {
                let p = grid.suggest(&SuggestContext::new(&space, t, seed)).unwrap();
                prop_assert!(space.contains(&p));
                let key = format!("{p:?}");
                prop_assert!(seen.insert(key));
            }
            prop_assert_eq!(
                grid.suggest(&SuggestContext::new(&space, total, seed)),
                Err(StrategyError::Exhausted { total })
            );
        }
    }
}
