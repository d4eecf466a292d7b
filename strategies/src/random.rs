//! Uniform random search (in each parameter's own scale: log floats are log-uniform).

use crate::space::Params;
use crate::strategy::{Strategy, StrategyError, SuggestContext};
use rand::Rng;

/// Independent uniform draws in the unit cube, mapped through each parameter's domain: floats
/// are uniform (log-uniform when `log`), discrete domains give each value the same chance
/// (log-scaled integers favour small values as a log-uniform draw does).
///
/// Stateless: trial `n` of a study with seed `s` always gets the same parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandomStrategy;

impl RandomStrategy {
    /// The unit-cube point of this suggestion (`ctx.space.dim()` coordinates in [0, 1)).
    pub fn unit_point(ctx: &SuggestContext<'_>) -> Vec<f64> {
        let mut rng = ctx.rng(0);
        (0..ctx.space.dim()).map(|_| rng.random::<f64>()).collect()
    }
}

impl Strategy for RandomStrategy {
    fn name(&self) -> &'static str {
        "random"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, StrategyError> {
        Ok(ctx.space.from_unit(&Self::unit_point(ctx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Domain, Param, ParamValue, SearchSpace};
    use crate::test_support::arb_space;
    use proptest::prelude::{any, prop_assert, proptest};

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param::new(
                "lr",
                Domain::Float {
                    low: 1e-5,
                    high: 1e-1,
                    log: true,
                },
            ),
            Param::new(
                "bits",
                Domain::IntValues {
                    values: vec![2, 4, 8],
                },
            ),
            Param::new(
                "x",
                Domain::Float {
                    low: -1.0,
                    high: 1.0,
                    log: false,
                },
            ),
        ])
        .unwrap()
    }

    #[test]
    fn deterministic_and_varied() {
        let space = space();
        let s = RandomStrategy;
        assert_eq!(s.name(), "random");
        let a = s.suggest(&SuggestContext::new(&space, 3, 42)).unwrap();
        let b = s.suggest(&SuggestContext::new(&space, 3, 42)).unwrap();
        assert_eq!(a, b);
        let c = s.suggest(&SuggestContext::new(&space, 4, 42)).unwrap();
        let d = s.suggest(&SuggestContext::new(&space, 3, 43)).unwrap();
        assert_ne!(a["x"], c["x"]);
        assert_ne!(a["x"], d["x"]);
    }

    #[test]
    fn log_uniform_and_uniform() {
        let space = space();
        let n = 4000;
        let (mut below, mut neg, mut bits8) = (0, 0, 0);
        for t in 0..n {
            let p = RandomStrategy
                .suggest(&SuggestContext::new(&space, t, 7))
                .unwrap();
            assert!(space.contains(&p));
            if let ParamValue::Float(lr) = p["lr"] {
                if lr < 1e-3 {
                    below += 1;
                }
            }
            if let ParamValue::Float(x) = p["x"] {
                if x < 0.0 {
                    neg += 1;
                }
            }
            if p["bits"] == ParamValue::Int(8) {
                bits8 += 1;
            }
        }
        // Expected n/2, n/2 and n/3, with a generous margin (about 6 standard deviations).
        assert!((1800..2200).contains(&below), "{below}");
        assert!((1800..2200).contains(&neg), "{neg}");
        assert!((1150..1520).contains(&bits8), "{bits8}");
    }

    proptest! {
        #[test]
        fn suggestions_lie_in_space(space in arb_space(), seed in any::<u64>(), t in any::<u64>()) {
            let p = RandomStrategy.suggest(&SuggestContext::new(&space, t, seed)).unwrap();
            prop_assert!(space.contains(&p));
        }
    }
}
