//! Input warping for `bayes`: each float and integer feature of the objective's GP may pass
//! through a Kumaraswamy CDF `F(x) = 1 − (1 − xᵃ)ᵇ` before the kernel sees it, so that a
//! parameter whose effect is crowded into one end of its range (a regularizer that matters
//! only near 0, a fraction whose useful values sit near 1) is stretched there and the
//! stationary Matérn kernel can resolve it. HEBO, the NeurIPS 2020 black-box optimization
//! challenge winner, warps its inputs the same way (Snoek et al. 2014, "Input warping for
//! Bayesian optimization of non-stationary functions").
//!
//! Every shape is a monotone bijection of [0, 1] (`F(0) = 0`, `F(1) = 1`), so the search
//! still runs over the unwarped unit cube and decoding is unchanged; only the model's
//! distances change. The shape of each feature is chosen from [`SHAPES`] by the GP's log
//! marginal likelihood at the already-fitted kernel hyperparameters plus a log-normal prior on
//! `a` and `b` centred on the identity, one feature at a time ([`InputWarp::fit`]); `bayes`
//! then refits the kernel hyperparameters on the warped features. Choosing from a small grid
//! at fixed hyperparameters, rather than fitting `a` and `b` jointly with the length scales by
//! L-BFGS as HEBO does, keeps a suggestion's cost inside the latency targets: one Cholesky
//! factorization per candidate shape and at most one extra hyperparameter fit.

use crate::gp::{log_marginal_from_distances, Hyper};

/// The Kumaraswamy shapes `(a, b)` a feature may take; `(1, 1)` (the identity) is implied.
/// `a < 1` stretches the low end, `b < 1` the high end, `a > 1` / `b > 1` compress them.
pub const SHAPES: [(f64, f64); 4] = [(0.5, 1.0), (1.0, 2.0), (2.0, 1.0), (1.0, 0.5)];

/// Standard deviation of the normal prior on `ln a` and `ln b` (centred on 0, the identity):
/// a halved or doubled exponent costs `ln(2)² / (2 · 0.35²) ≈ 1.96` nats, so a shape must
/// raise the marginal likelihood by about that much per changed exponent to be taken. Of
/// 0.2, 0.3, 0.35, 0.4 and 0.5 tried in-process (docs/STRATEGIES.md), 0.35 was the one that
/// won on the badly scaled problems without losing on the stationary ones.
const LOG_SHAPE_SD: f64 = 0.35;

/// Features with a smaller `1/ℓ²` (a length scale over ~3 unit cubes: the model finds them
/// nearly irrelevant) are not warped: a warp moves each of their pairwise terms by less than
/// this, too little to pay for the shape prior, and skipping them keeps the choice cheap.
const MIN_INV_SQ_LENGTHSCALE: f64 = 0.1;

/// Where the slope is evaluated at the very ends (it is infinite there for `a < 1` or `b < 1`).
const EDGE: f64 = 1e-9;

/// `v^e` for `v ≥ 0`, without a transcendental call for the exponents of [`SHAPES`] (the
/// acquisition warps every candidate's features, so this is on the hot path).
#[inline]
fn pow(v: f64, e: f64) -> f64 {
    if e == 1.0 {
        v
    } else if e == 0.5 {
        v.sqrt()
    } else if e == 2.0 {
        v * v
    } else if e == -0.5 {
        1.0 / v.sqrt()
    } else if e == 0.0 {
        1.0
    } else {
        v.powf(e)
    }
}

/// The Kumaraswamy CDF `1 − (1 − xᵃ)ᵇ` of `x ∈ [0, 1]` (clamped).
pub fn kumaraswamy(x: f64, a: f64, b: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    (1.0 - pow(1.0 - pow(x, a), b)).clamp(0.0, 1.0)
}

/// The inverse of [`kumaraswamy`]: `(1 − (1 − t)^{1/b})^{1/a}`.
pub fn kumaraswamy_inverse(t: f64, a: f64, b: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    let inner = -((-t).ln_1p() / b).exp_m1();
    inner.max(0.0).powf(1.0 / a).clamp(0.0, 1.0)
}

/// `dF/dx = a b x^{a−1} (1 − xᵃ)^{b−1}`, evaluated inside `[EDGE, 1 − EDGE]`.
pub fn kumaraswamy_slope(x: f64, a: f64, b: f64) -> f64 {
    let x = x.clamp(EDGE, 1.0 - EDGE);
    a * b * pow(x, a - 1.0) * pow(1.0 - pow(x, a), b - 1.0)
}

/// A warp per model feature: `None` for the identity (and for one-hot features, never
/// warped).
#[derive(Clone, Debug, PartialEq)]
pub struct InputWarp {
    shapes: Vec<Option<(f64, f64)>>,
}

impl InputWarp {
    /// Fewest training points before any feature is warped: below this the marginal
    /// likelihood cannot tell a shape from a length scale.
    pub const MIN_POINTS: usize = 12;

    /// No feature warped.
    pub fn identity(features: usize) -> Self {
        InputWarp {
            shapes: vec![None; features],
        }
    }

    /// A warp with the given shape per feature (`None`: the identity).
    pub fn from_shapes(shapes: Vec<Option<(f64, f64)>>) -> Self {
        InputWarp { shapes }
    }

    /// Whether no feature is warped.
    pub fn is_identity(&self) -> bool {
        self.shapes.iter().all(Option::is_none)
    }

    /// The shape of feature `f` (`None`: the identity).
    pub fn shape(&self, f: usize) -> Option<(f64, f64)> {
        self.shapes.get(f).copied().flatten()
    }

    /// Warps row-major points (`features` per row) in place.
    pub fn apply_in_place(&self, xs: &mut [f64]) {
        let dim = self.shapes.len();
        if dim == 0 || self.is_identity() {
            return;
        }
        for row in xs.chunks_exact_mut(dim) {
            for (v, s) in row.iter_mut().zip(&self.shapes) {
                if let Some((a, b)) = s {
                    *v = kumaraswamy(*v, *a, *b);
                }
            }
        }
    }

    /// The warped copy of row-major points.
    pub fn apply(&self, xs: &[f64]) -> Vec<f64> {
        let mut out = xs.to_vec();
        self.apply_in_place(&mut out);
        out
    }

    /// Multiplies a gradient taken in warped features at `x` (one point, unwarped) by the
    /// warp's slopes, giving the gradient in the unwarped features.
    pub fn chain_gradient(&self, x: &[f64], grad: &mut [f64]) {
        for ((g, v), s) in grad.iter_mut().zip(x).zip(&self.shapes) {
            if let Some((a, b)) = s {
                *g *= kumaraswamy_slope(*v, *a, *b);
            }
        }
    }

    /// Chooses a shape for each of the `movable` features of the training inputs `x`
    /// (row-major, `dim` columns, unwarped) by the log marginal likelihood of a GP with the
    /// fitted `hyper` on `y` (with `known` noise per point) plus the shape prior, one feature
    /// at a time in order, each choice kept for the next. The identity everywhere with fewer
    /// than [`InputWarp::MIN_POINTS`] points or when no GP can be built.
    pub fn fit(
        x: &[f64],
        dim: usize,
        y: &[f64],
        known: &[f64],
        hyper: &Hyper,
        movable: &[usize],
    ) -> Self {
        let mut warp = InputWarp::identity(dim);
        let n = y.len();
        if n < Self::MIN_POINTS || movable.is_empty() || x.len() != n * dim {
            return warp;
        }
        let w = hyper.inv_sq_lengthscales();
        // Scaled squared distance of every pair (j < i), kept up to date as columns change.
        let pairs = n * (n - 1) / 2;
        let mut r2 = Vec::with_capacity(pairs);
        for i in 0..n {
            for j in 0..i {
                r2.push(
                    (0..dim)
                        .map(|d| (x[i * dim + d] - x[j * dim + d]).powi(2) * w[d])
                        .sum::<f64>(),
                );
            }
        }
        let Some(mut best) = log_marginal_from_distances(&r2, y, hyper, known) else {
            return warp;
        };
        let mut trial = vec![0.0; pairs];
        for &f in movable {
            if w[f] < MIN_INV_SQ_LENGTHSCALE {
                continue;
            }
            let column: Vec<f64> = (0..n).map(|i| x[i * dim + f]).collect();
            // r2 without feature f's term.
            let mut rest = Vec::with_capacity(pairs);
            let mut pair = 0;
            for i in 0..n {
                for j in 0..i {
                    rest.push(r2[pair] - (column[i] - column[j]).powi(2) * w[f]);
                    pair += 1;
                }
            }
            let mut chosen: Option<((f64, f64), Vec<f64>)> = None;
            for &(a, b) in &SHAPES {
                let t: Vec<f64> = column.iter().map(|v| kumaraswamy(*v, a, b)).collect();
                let mut pair = 0;
                for i in 0..n {
                    for j in 0..i {
                        trial[pair] = (rest[pair] + (t[i] - t[j]).powi(2) * w[f]).max(0.0);
                        pair += 1;
                    }
                }
                let Some(lml) = log_marginal_from_distances(&trial, y, hyper, known) else {
                    continue;
                };
                let total = lml + log_shape_prior(a, b);
                if total > best {
                    best = total;
                    chosen = Some(((a, b), trial.clone()));
                }
            }
            if let Some((shape, kept)) = chosen {
                warp.shapes[f] = Some(shape);
                r2 = kept;
            }
        }
        warp
    }
}

/// `ln p(a, b)` up to a constant: independent normals on `ln a` and `ln b` (0 at the
/// identity).
fn log_shape_prior(a: f64, b: f64) -> f64 {
    let s2 = 2.0 * LOG_SHAPE_SD * LOG_SHAPE_SD;
    -(a.ln().powi(2) + b.ln().powi(2)) / s2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gp::{fit, Prior};

    #[test]
    fn every_shape_is_a_monotone_bijection_of_the_unit_interval() {
        for &(a, b) in &SHAPES {
            assert!(kumaraswamy(0.0, a, b).abs() < 1e-15, "{a} {b}");
            assert!((kumaraswamy(1.0, a, b) - 1.0).abs() < 1e-15, "{a} {b}");
            let mut last = -1.0;
            for i in 0..=1000 {
                let x = i as f64 / 1000.0;
                let t = kumaraswamy(x, a, b);
                assert!(t >= last, "({a}, {b}) not increasing at {x}");
                last = t;
            }
        }
    }

    #[test]
    fn the_inverse_round_trips() {
        for &(a, b) in &SHAPES {
            for i in 0..=100 {
                let x = i as f64 / 100.0;
                let back = kumaraswamy_inverse(kumaraswamy(x, a, b), a, b);
                assert!((back - x).abs() < 1e-9, "({a}, {b}) at {x}: {back}");
            }
        }
    }

    #[test]
    fn the_slope_matches_finite_differences() {
        let h = 1e-6;
        for &(a, b) in &SHAPES {
            for &x in &[0.05, 0.3, 0.5, 0.8, 0.95] {
                let fd = (kumaraswamy(x + h, a, b) - kumaraswamy(x - h, a, b)) / (2.0 * h);
                let s = kumaraswamy_slope(x, a, b);
                assert!(
                    (fd - s).abs() < 1e-5 * s.max(1.0),
                    "({a}, {b}) at {x}: {fd} vs {s}"
                );
            }
        }
    }

    #[test]
    fn a_hand_worked_shape() {
        // a = 2, b = 1: F(x) = x²; a = 1, b = 2: F(x) = 1 − (1 − x)² = 2x − x².
        assert!((kumaraswamy(0.3, 2.0, 1.0) - 0.09).abs() < 1e-12);
        assert!((kumaraswamy(0.3, 1.0, 2.0) - 0.51).abs() < 1e-12);
        assert!((kumaraswamy_slope(0.3, 1.0, 2.0) - 1.4).abs() < 1e-12);
        assert!((kumaraswamy(0.25, 0.5, 1.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn the_chained_gradient_is_the_unwarped_features_gradient() {
        let warp = InputWarp::from_shapes(vec![Some((0.5, 1.0)), None, Some((1.0, 2.0))]);
        // g(t) = Σ c_f t_f in warped features: ∂/∂x_f = c_f F_f'(x_f).
        let c = [1.5, -2.0, 0.7];
        let g = |x: &[f64]| -> f64 { warp.apply(x).iter().zip(&c).map(|(t, c)| t * c).sum() };
        let x = [0.2, 0.6, 0.4];
        let mut grad = c.to_vec();
        warp.chain_gradient(&x, &mut grad);
        for f in 0..3 {
            let (mut hi, mut lo) = (x, x);
            hi[f] += 1e-6;
            lo[f] -= 1e-6;
            let fd = (g(&hi) - g(&lo)) / 2e-6;
            assert!(
                (fd - grad[f]).abs() < 1e-5,
                "feature {f}: {fd} vs {}",
                grad[f]
            );
        }
    }

    /// The warp chosen for 30 points of `f(u, v)` on a 2-D lattice, standardized, with the
    /// hyperparameters fitted first (as `bayes` does).
    fn warp_of(f: impl Fn(f64, f64) -> f64) -> InputWarp {
        let n = 30;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let u = (i as f64 + 0.5) / n as f64;
            let v = ((i * 7) % n) as f64 / n as f64 + 0.01;
            x.extend([u, v]);
            y.push(f(u, v));
        }
        let mean = y.iter().sum::<f64>() / n as f64;
        let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let y: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
        let prior = Prior::default_for(2);
        let (hyper, _) = fit(&x, 2, &y, &prior, &[prior.start()], 30).unwrap();
        InputWarp::fit(&x, 2, &y, &[], &hyper, &[0, 1])
    }

    /// A feature that only matters near 0 (`exp(−u/0.03)`, as a regularizer whose useful
    /// values sit at the bottom of a linear range): the fit stretches that end (`a < 1`).
    #[test]
    fn stretches_the_end_where_the_function_changes() {
        let warp = warp_of(|u, v| (-u / 0.03).exp() + 0.3 * v);
        let (a, _) = warp.shape(0).expect("the steep feature is warped");
        assert!(a < 1.0, "{warp:?}");
    }

    /// A plane needs no warp: every shape would bend it.
    #[test]
    fn a_plane_stays_unwarped() {
        let warp = warp_of(|u, v| u - 0.5 * v);
        assert!(warp.is_identity(), "{warp:?}");
    }

    #[test]
    fn too_few_points_stay_unwarped() {
        let x: Vec<f64> = (0..8).map(|i| i as f64 / 8.0).collect();
        let y: Vec<f64> = x.iter().map(|u| (-u / 0.03).exp()).collect();
        let prior = Prior::default_for(1);
        let warp = InputWarp::fit(&x, 1, &y, &[], &prior.start(), &[0]);
        assert!(warp.is_identity());
    }
}
