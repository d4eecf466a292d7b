//! Parameter importance, PED-ANOVA style (Watanabe et al., "PED-ANOVA: Efficiently Quantifying
//! Hyperparameter Importance in Arbitrary Subspaces", IJCAI 2023).
//!
//! The question it answers is the one a user of a study asks: *which settings did the good
//! trials have in common?* For one objective, the trials whose loss is in the best `quantile`
//! (the "top" set, at least `min_top` trials) are compared with all of them, one parameter at a
//! time: a Parzen estimator of the parameter's values is built for each set on a discrete grid
//! of the parameter's domain, and the importance is the Pearson divergence
//! `Σ p_all(x) · (p_top(x) / p_all(x) − 1)²` between the two. A parameter the good trials did
//! not care about has the same distribution in both sets (divergence 0); one they agree on has a
//! peaked top distribution (large divergence). The divergences are normalized to sum to 1.
//!
//! Why PED-ANOVA rather than fANOVA (a random forest and its functional ANOVA decomposition): a
//! QAT study has tens of trials, not thousands; PED-ANOVA has a closed form with no model to fit,
//! no bootstrap randomness to seed, it is fast enough to run on every page view, and categorical
//! parameters (the quantization format) need no encoding. It measures what mattered *to reach the
//! top* of the objective, which is what a tuning user wants to know; fANOVA measures variance
//! over the whole space, which a sequential strategy samples very unevenly.
//!
//! The function is pure and deterministic: the same samples give the same numbers.
//!
//! ```
//! use quantune_strategies::importance::{ped_anova, ImportanceOptions};
//! use quantune_strategies::{Domain, Param, ParamValue, Params, SearchSpace};
//!
//! let space = SearchSpace::new(vec![
//!     Param::new("x", Domain::Float { low: 0.0, high: 1.0, log: false }),
//!     Param::new("y", Domain::Float { low: 0.0, high: 1.0, log: false }),
//! ]).unwrap();
//! let samples: Vec<(Params, f64)> = (0..40)
//!     .map(|i| {
//!         let x = (i as f64 * 0.618).fract();
//!         let y = (i as f64 * 0.414).fract();
//!         let p: Params = [("x".to_string(), ParamValue::Float(x)),
//!                          ("y".to_string(), ParamValue::Float(y))].into();
//!         (p, (x - 0.2).powi(2)) // only x matters
//!     })
//!     .collect();
//! let imp = ped_anova(&space, &samples, &ImportanceOptions::default());
//! assert_eq!(imp.params[0].0, "x");
//! ```

use crate::space::{Domain, Params, SearchSpace};

/// Settings of [`ped_anova`].
#[derive(Clone, Debug, PartialEq)]
pub struct ImportanceOptions {
    /// The share of trials that counts as "top" (0 < q ≤ 1); 0.1 = the best 10 %.
    pub quantile: f64,
    /// At least this many trials are in the top set.
    pub min_top: usize,
    /// Grid points a continuous (or large integer) domain is discretized into.
    pub steps: usize,
    /// Weight of the uniform prior mixed into every estimator (regularizes small sets).
    pub prior_weight: f64,
}

impl Default for ImportanceOptions {
    fn default() -> Self {
        ImportanceOptions {
            quantile: 0.1,
            min_top: 2,
            steps: 50,
            prior_weight: 1.0,
        }
    }
}

/// The importance of each parameter for one objective.
#[derive(Clone, Debug, PartialEq)]
pub struct Importance {
    /// `(parameter, importance)`, most important first (ties by name); the importances sum to 1
    /// (or are all 0 for parameters with a single value).
    pub params: Vec<(String, f64)>,
    /// How many trials were used.
    pub trials: usize,
    /// How many of them formed the top set.
    pub top: usize,
    /// Why the numbers say little, when they do (too few trials, every trial in the top set).
    pub note: Option<String>,
}

/// PED-ANOVA importance of every parameter of `space` from `samples` of `(parameters, loss)`
/// (smaller loss is better). Samples with a non-finite loss or parameters outside the space are
/// ignored.
pub fn ped_anova(
    space: &SearchSpace,
    samples: &[(Params, f64)],
    opts: &ImportanceOptions,
) -> Importance {
    let usable: Vec<(&Params, f64)> = samples
        .iter()
        .filter(|(p, l)| l.is_finite() && space.contains(p))
        .map(|(p, l)| (p, *l))
        .collect();
    let n = usable.len();
    let varying: Vec<usize> = (0..space.dim())
        .filter(|&i| space.params()[i].domain.cardinality() != Some(1))
        .collect();
    let equal = |note: String, top: usize| {
        let share = if varying.is_empty() {
            0.0
        } else {
            1.0 / varying.len() as f64
        };
        let params = space
            .params()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let v = if varying.contains(&i) { share } else { 0.0 };
                (p.name.clone(), v)
            })
            .collect();
        Importance {
            params,
            trials: n,
            top,
            note: Some(note),
        }
    };
    let min_top = opts.min_top.max(1);
    if n <= min_top {
        return equal(
            format!(
                "too few trials ({n}): importance needs more than {min_top} finished trials with the objective"
            ),
            n,
        );
    }
    // The top set: losses up to the larger of the `min_top`-th smallest and the quantile's.
    let mut sorted: Vec<f64> = usable.iter().map(|(_, l)| *l).collect();
    sorted.sort_by(f64::total_cmp);
    let q = opts.quantile.clamp(f64::MIN_POSITIVE, 1.0);
    let q_index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    let cutoff = sorted[min_top - 1].max(sorted[q_index]);
    let top: Vec<&Params> = usable
        .iter()
        .filter(|(_, l)| *l <= cutoff)
        .map(|(p, _)| *p)
        .collect();
    let all: Vec<&Params> = usable.iter().map(|(p, _)| *p).collect();
    if top.len() == n {
        return equal(
            "every trial is in the top set (their losses are equal), so no parameter stands out"
                .into(),
            n,
        );
    }
    let mut params: Vec<(String, f64)> = Vec::with_capacity(space.dim());
    let mut sum = 0.0;
    for (i, p) in space.params().iter().enumerate() {
        let d = if varying.contains(&i) {
            let grid = Grid::of(&p.domain, opts.steps.max(2));
            // A conditional parameter is compared over the trials in which it existed.
            let index = |ps: &&Params| Some(grid.index(&p.domain, ps.get(&p.name)?));
            let top_idx: Vec<usize> = top.iter().filter_map(index).collect();
            let all_idx: Vec<usize> = all.iter().filter_map(index).collect();
            if top_idx.is_empty() || all_idx.is_empty() {
                params.push((p.name.clone(), 0.0));
                continue;
            }
            let p_top = grid.density(&top_idx, opts.prior_weight);
            let p_all = grid.density(&all_idx, opts.prior_weight);
            pearson_divergence(&p_top, &p_all)
        } else {
            0.0
        };
        sum += d;
        params.push((p.name.clone(), d));
    }
    if sum <= 0.0 || !sum.is_finite() {
        return equal(
            "the top trials are spread like all trials in every parameter".into(),
            top.len(),
        );
    }
    for (_, v) in &mut params {
        *v /= sum;
    }
    params.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let note = (top.len() < 5).then(|| {
        format!(
            "only {} trial(s) in the top set: take the ranking as a hint (5 or more make it steadier)",
            top.len()
        )
    });
    Importance {
        params,
        trials: n,
        top: top.len(),
        note,
    }
}

/// `Σ q(x) · (p(x)/q(x) − 1)²` over a grid.
fn pearson_divergence(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(&p, &q)| {
            let (p, q) = (p + 1e-12, q + 1e-12);
            q * (p / q - 1.0).powi(2)
        })
        .sum()
}

/// A parameter's domain as grid cells: ordered (numbers; kernels spread to neighbours) or not
/// (categorical choices; no smoothing across choices).
struct Grid {
    /// Number of cells.
    cells: usize,
    /// Whether neighbouring cells are close values.
    ordered: bool,
}

impl Grid {
    fn of(domain: &Domain, steps: usize) -> Grid {
        match domain {
            Domain::Categorical { choices } => Grid {
                cells: choices.len(),
                ordered: false,
            },
            d => Grid {
                cells: d
                    .cardinality()
                    .map_or(steps, |c| (c.min(steps as u64)) as usize)
                    .max(1),
                ordered: true,
            },
        }
    }

    /// The cell of a value (its position in the unit interval, cut into `cells` equal parts).
    fn index(&self, domain: &Domain, value: &crate::space::ParamValue) -> usize {
        let u = domain.to_unit(value).unwrap_or(0.5);
        ((u * self.cells as f64).floor() as usize).min(self.cells - 1)
    }

    /// A Parzen estimate on the grid: a uniform prior of weight `prior` plus one kernel per
    /// observation (a Gaussian with Scott's bandwidth for ordered cells, the cell itself for
    /// unordered ones); sums to 1.
    fn density(&self, obs: &[usize], prior: f64) -> Vec<f64> {
        let m = self.cells;
        let mut p = vec![prior / m as f64; m];
        if self.ordered && m > 1 {
            let n = obs.len() as f64;
            let mean = obs.iter().map(|&i| i as f64).sum::<f64>() / n;
            let var = obs.iter().map(|&i| (i as f64 - mean).powi(2)).sum::<f64>() / n;
            // Scott's rule, in cells; never narrower than half a cell nor wider than the grid.
            let h = (1.059 * var.sqrt() * n.powf(-0.2)).clamp(0.5, m as f64);
            for &c in obs {
                let k: Vec<f64> = (0..m)
                    .map(|g| (-0.5 * ((g as f64 - c as f64) / h).powi(2)).exp())
                    .collect();
                let z: f64 = k.iter().sum();
                for (pg, kg) in p.iter_mut().zip(k) {
                    *pg += kg / z;
                }
            }
        } else {
            for &c in obs {
                p[c] += 1.0;
            }
        }
        let total: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= total);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Param, ParamValue};
    use rand::{Rng, SeedableRng};

    fn space() -> SearchSpace {
        SearchSpace::new(vec![
            Param::new(
                "learning_rate",
                Domain::Float {
                    low: 1e-5,
                    high: 1e-2,
                    log: true,
                },
            ),
            Param::new(
                "batch_size",
                Domain::IntValues {
                    values: vec![8, 16, 32, 64],
                },
            ),
            Param::new(
                "quantization",
                Domain::Categorical {
                    choices: vec![
                        ParamValue::Str("bf16".into()),
                        ParamValue::Str("int8".into()),
                        ParamValue::Str("int4".into()),
                    ],
                },
            ),
            Param::new(
                "warmup",
                Domain::Int {
                    low: 0,
                    high: 1000,
                    step: 10,
                    log: false,
                },
            ),
        ])
        .unwrap()
    }

    /// Random points of `space()` with a loss from `f` plus a little noise.
    fn samples(n: usize, seed: u64, f: impl Fn(&Params) -> f64) -> Vec<(Params, f64)> {
        let s = space();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let u: Vec<f64> = (0..s.dim()).map(|_| rng.random::<f64>()).collect();
                let p = s.from_unit(&u);
                let loss = f(&p) + 0.01 * rng.random::<f64>();
                (p, loss)
            })
            .collect()
    }

    fn lr(p: &Params) -> f64 {
        match p["learning_rate"] {
            ParamValue::Float(x) => x,
            _ => unreachable!(),
        }
    }

    #[test]
    fn planted_float_parameter_ranks_first() {
        // Only the learning rate matters: the loss is its log-distance from 3e-4.
        let data = samples(60, 7, |p| (lr(p).ln() - 3e-4f64.ln()).abs());
        let imp = ped_anova(&space(), &data, &ImportanceOptions::default());
        assert_eq!(imp.params[0].0, "learning_rate", "{imp:?}");
        assert!(imp.params[0].1 > 0.5, "{imp:?}");
        let total: f64 = imp.params.iter().map(|(_, v)| v).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert_eq!(imp.trials, 60);
        assert_eq!(imp.top, 6);
        assert!(imp.note.is_none(), "{imp:?}");
    }

    #[test]
    fn planted_categorical_parameter_ranks_first() {
        let data = samples(50, 3, |p| match &p["quantization"] {
            ParamValue::Str(s) if s == "int4" => 0.0,
            _ => 1.0,
        });
        let imp = ped_anova(&space(), &data, &ImportanceOptions::default());
        assert_eq!(imp.params[0].0, "quantization", "{imp:?}");
        assert!(imp.params[0].1 > 0.5, "{imp:?}");
    }

    #[test]
    fn deterministic_and_order_independent() {
        let data = samples(40, 11, |p| lr(p) * 100.0);
        let a = ped_anova(&space(), &data, &ImportanceOptions::default());
        let mut rev = data.clone();
        rev.reverse();
        let b = ped_anova(&space(), &rev, &ImportanceOptions::default());
        assert_eq!(a, ped_anova(&space(), &data, &ImportanceOptions::default()));
        // The input order changes sums only in their last bits.
        assert_eq!((a.trials, a.top), (b.trials, b.top));
        for ((na, va), (nb, vb)) in a.params.iter().zip(&b.params) {
            assert_eq!(na, nb);
            assert!((va - vb).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn too_few_or_flat_trials_give_equal_shares_with_a_note() {
        let data = samples(2, 1, |_| 1.0);
        let imp = ped_anova(&space(), &data, &ImportanceOptions::default());
        assert!(imp.note.as_deref().unwrap().contains("too few"), "{imp:?}");
        assert!(imp.params.iter().all(|(_, v)| (*v - 0.25).abs() < 1e-12));

        let flat: Vec<(Params, f64)> = samples(20, 2, |_| 0.0)
            .into_iter()
            .map(|(p, _)| (p, 1.0))
            .collect();
        let imp = ped_anova(&space(), &flat, &ImportanceOptions::default());
        assert!(imp.note.is_some(), "{imp:?}");
    }

    #[test]
    fn single_valued_parameters_get_zero() {
        let s = SearchSpace::new(vec![
            Param::new(
                "x",
                Domain::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                },
            ),
            Param::new("fixed", Domain::IntValues { values: vec![4] }),
        ])
        .unwrap();
        let data: Vec<(Params, f64)> = (0..30)
            .map(|i| {
                let x = (i as f64 * 0.37).fract();
                let p: Params = [
                    ("x".to_string(), ParamValue::Float(x)),
                    ("fixed".to_string(), ParamValue::Int(4)),
                ]
                .into();
                (p, x)
            })
            .collect();
        let imp = ped_anova(&s, &data, &ImportanceOptions::default());
        assert_eq!(imp.params, vec![("x".into(), 1.0), ("fixed".into(), 0.0)]);
    }

    #[test]
    fn pearson_divergence_of_equal_distributions_is_zero() {
        let p = [0.25, 0.25, 0.5];
        assert!(pearson_divergence(&p, &p).abs() < 1e-12);
        // All mass on one of two cells vs uniform: 0.5·(2−1)² + 0.5·(0−1)² = 1.
        assert!((pearson_divergence(&[1.0, 0.0], &[0.5, 0.5]) - 1.0).abs() < 1e-9);
    }
}
