//! Output warping for `bayes`: a Yeo-Johnson power transform of the (standardized) losses,
//! its exponent fitted by maximum likelihood, so that a heavy tail of bad trials (a diverging
//! model's loss, a log-loss blowing up) does not flatten the differences among the good ones
//! the GP must resolve. HEBO, the NeurIPS 2020 black-box optimization challenge winner, does
//! the same (Box-Cox or Yeo-Johnson of the objective, with a fallback when it fails).
//!
//! The transform is monotone increasing, so the best trial stays the best and the order of
//! every pair of trials is kept; it is fitted anew on each suggestion, from the data only
//! (deterministic). When it cannot be fitted (too few or identical values, a non-finite
//! result), [`OutputWarp::fit`] falls back to the identity.

/// Exponents the fit may choose from: `[-LAMBDA_MAX, 2 + LAMBDA_MAX]`'s middle part. Beyond
/// ±3 the transform of standardized data is dominated by one or two points.
const LAMBDA_MIN: f64 = -3.0;
const LAMBDA_MAX: f64 = 3.0;

/// The Yeo-Johnson transform of `y` with exponent `lambda`: for `y ≥ 0`,
/// `((y + 1)^λ − 1) / λ` (`ln(1 + y)` at λ = 0); for `y < 0`, `−((1 − y)^(2−λ) − 1) / (2 − λ)`
/// (`−ln(1 − y)` at λ = 2). Increasing in `y` for every λ; λ = 1 is the identity.
pub fn yeo_johnson(y: f64, lambda: f64) -> f64 {
    if y >= 0.0 {
        if lambda.abs() < 1e-12 {
            y.ln_1p()
        } else {
            ((lambda * y.ln_1p()).exp() - 1.0) / lambda
        }
    } else {
        let mu = 2.0 - lambda;
        if mu.abs() < 1e-12 {
            -(-y).ln_1p()
        } else {
            -(((mu * (-y).ln_1p()).exp()) - 1.0) / mu
        }
    }
}

/// The inverse of [`yeo_johnson`] in its first argument.
pub fn yeo_johnson_inverse(t: f64, lambda: f64) -> f64 {
    if t >= 0.0 {
        if lambda.abs() < 1e-12 {
            t.exp_m1()
        } else {
            ((lambda * t).ln_1p() / lambda).exp_m1()
        }
    } else {
        let mu = 2.0 - lambda;
        if mu.abs() < 1e-12 {
            -(-t).exp_m1()
        } else {
            -((-mu * t).ln_1p() / mu).exp_m1()
        }
    }
}

/// `d yeo_johnson(y, λ) / dy`: `(1 + |y|)^(±(λ − 1))`, which maps a measurement's standard
/// deviation into the warped scale.
pub fn yeo_johnson_slope(y: f64, lambda: f64) -> f64 {
    if y >= 0.0 {
        ((lambda - 1.0) * y.ln_1p()).exp()
    } else {
        ((1.0 - lambda) * (-y).ln_1p()).exp()
    }
}

/// The profile log-likelihood of λ for data `z` under "the transformed data is Gaussian":
/// `−n/2 ln σ̂²(λ) + (λ − 1) Σ sign(z) ln(1 + |z|)`.
fn log_likelihood(z: &[f64], lambda: f64) -> f64 {
    let n = z.len() as f64;
    let t: Vec<f64> = z.iter().map(|v| yeo_johnson(*v, lambda)).collect();
    let mean = t.iter().sum::<f64>() / n;
    let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    if !(var.is_finite() && var > 0.0) {
        return f64::NEG_INFINITY;
    }
    let jacobian: f64 = z.iter().map(|v| v.signum() * v.abs().ln_1p()).sum();
    -0.5 * n * var.ln() + (lambda - 1.0) * jacobian
}

/// A fitted output warp: standardize, Yeo-Johnson with the fitted λ, standardize again.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputWarp {
    /// Mean and standard deviation the raw values are standardized with.
    pub pre: (f64, f64),
    /// The fitted exponent (1 for the identity fallback).
    pub lambda: f64,
    /// Mean and standard deviation of the transformed values.
    pub post: (f64, f64),
}

impl OutputWarp {
    /// No warp, only standardization with the mean and standard deviation of `values`.
    pub fn standardizing(values: &[f64]) -> OutputWarp {
        let pre = mean_sd(values);
        OutputWarp {
            pre,
            lambda: 1.0,
            post: (0.0, 1.0),
        }
    }

    /// Fits λ by maximum likelihood (a grid over [−3, 3], then golden-section refinement around
    /// the best grid point). Falls back to λ = 1 with fewer than 4 values, constant values, or
    /// a non-finite transform.
    pub fn fit(values: &[f64]) -> OutputWarp {
        let identity = OutputWarp::standardizing(values);
        if values.len() < 4 || values.iter().any(|v| !v.is_finite()) {
            return identity;
        }
        let (m, s) = identity.pre;
        let z: Vec<f64> = values.iter().map(|v| (v - m) / s).collect();
        if z.iter().all(|v| v.abs() < 1e-12) {
            return identity;
        }
        let steps = 24;
        let grid: Vec<f64> = (0..=steps)
            .map(|k| LAMBDA_MIN + (LAMBDA_MAX - LAMBDA_MIN) * k as f64 / steps as f64)
            .collect();
        let mut best = (1.0, log_likelihood(&z, 1.0));
        for &l in &grid {
            let ll = log_likelihood(&z, l);
            if ll > best.1 {
                best = (l, ll);
            }
        }
        let h = (LAMBDA_MAX - LAMBDA_MIN) / steps as f64;
        let (mut a, mut b) = ((best.0 - h).max(LAMBDA_MIN), (best.0 + h).min(LAMBDA_MAX));
        let g = 0.5 * (5f64.sqrt() - 1.0);
        for _ in 0..30 {
            let c = b - g * (b - a);
            let d = a + g * (b - a);
            if log_likelihood(&z, c) > log_likelihood(&z, d) {
                b = d;
            } else {
                a = c;
            }
        }
        let mid = 0.5 * (a + b);
        let lambda = if log_likelihood(&z, mid) > best.1 {
            mid
        } else {
            best.0
        };
        let t: Vec<f64> = z.iter().map(|v| yeo_johnson(*v, lambda)).collect();
        if t.iter().any(|v| !v.is_finite()) {
            return identity;
        }
        let post = mean_sd(&t);
        if post.1 == 1.0 && t.iter().all(|v| (v - post.0).abs() < 1e-12) {
            return identity;
        }
        OutputWarp {
            pre: (m, s),
            lambda,
            post,
        }
    }

    /// The warped value of `y`: standardized, transformed, standardized again.
    pub fn apply(&self, y: f64) -> f64 {
        let z = (y - self.pre.0) / self.pre.1;
        if self.lambda == 1.0 {
            // exactly the standardization (no rounding through exp/ln)
            return (z - self.post.0) / self.post.1;
        }
        (yeo_johnson(z, self.lambda) - self.post.0) / self.post.1
    }

    /// The raw value whose warped value is `w` (the inverse of [`OutputWarp::apply`]).
    pub fn invert(&self, w: f64) -> f64 {
        let t = w * self.post.1 + self.post.0;
        let z = if self.lambda == 1.0 {
            t
        } else {
            yeo_johnson_inverse(t, self.lambda)
        };
        z * self.pre.1 + self.pre.0
    }

    /// `d apply(y) / dy`: scales a raw measurement spread into warped units.
    pub fn slope(&self, y: f64) -> f64 {
        yeo_johnson_slope((y - self.pre.0) / self.pre.1, self.lambda) / (self.pre.1 * self.post.1)
    }
}

/// Mean and standard deviation (1 when the values are all equal).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    (
        mean,
        if sd > 1e-12 * (1.0 + mean.abs()) {
            sd
        } else {
            1.0
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, proptest};

    #[test]
    fn known_values() {
        // λ = 1 is the identity, λ = 0 is ln(1 + y) above 0, λ = 2 is −ln(1 − y) below 0.
        for y in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            assert!((yeo_johnson(y, 1.0) - y).abs() < 1e-12);
        }
        assert!((yeo_johnson(1.0, 0.0) - 2f64.ln()).abs() < 1e-12);
        assert!((yeo_johnson(-1.0, 2.0) + 2f64.ln()).abs() < 1e-12);
        // λ = 0.5 at y = 3: ((4)^0.5 − 1) / 0.5 = 2; at y = −3: −((4)^1.5 − 1) / 1.5 = −14/3.
        assert!((yeo_johnson(3.0, 0.5) - 2.0).abs() < 1e-12);
        assert!((yeo_johnson(-3.0, 0.5) + 14.0 / 3.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn round_trips_and_is_increasing(y in -50.0f64..50.0, lambda in -3.0f64..3.0) {
            let t = yeo_johnson(y, lambda);
            let back = yeo_johnson_inverse(t, lambda);
            prop_assert!((back - y).abs() <= 1e-8 * (1.0 + y.abs()), "{} -> {} -> {}", y, t, back);
            prop_assert!(yeo_johnson(y + 0.01, lambda) > t);
            // the slope is the derivative
            let h = 1e-6;
            let fd = (yeo_johnson(y + h, lambda) - yeo_johnson(y - h, lambda)) / (2.0 * h);
            let s = yeo_johnson_slope(y, lambda);
            prop_assert!((fd - s).abs() <= 1e-4 * (1.0 + s.abs()), "{} vs {}", fd, s);
        }
    }

    #[test]
    fn fitted_warp_round_trips_and_keeps_the_order() {
        let raw: Vec<f64> = (0..30).map(|i| (0.3 * i as f64).exp()).collect();
        let w = OutputWarp::fit(&raw);
        assert!(
            w.lambda < 0.5,
            "a right-skewed sample wants λ < 1: {}",
            w.lambda
        );
        let warped: Vec<f64> = raw.iter().map(|y| w.apply(*y)).collect();
        for (y, t) in raw.iter().zip(&warped) {
            assert!((w.invert(*t) - y).abs() < 1e-6 * (1.0 + y.abs()));
        }
        assert!(warped.windows(2).all(|p| p[0] < p[1]));
        // standardized
        let mean = warped.iter().sum::<f64>() / warped.len() as f64;
        let var = warped.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / warped.len() as f64;
        assert!(mean.abs() < 1e-9 && (var - 1.0).abs() < 1e-9);
        // the warped sample is far less skewed than the raw one
        let skew = |v: &[f64]| {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let s = (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / n).sqrt();
            v.iter().map(|a| ((a - m) / s).powi(3)).sum::<f64>() / n
        };
        let (before, after) = (skew(&raw), skew(&warped));
        assert!(
            before > 1.5 && after.abs() < 0.4 * before,
            "{before} {after}"
        );
    }

    #[test]
    fn gaussian_data_stays_nearly_linear() {
        // Evenly spread normal quantiles: λ near 1.
        let v: Vec<f64> = (1..40)
            .map(|i| {
                let p = i as f64 / 40.0;
                // a rough probit: good enough for a symmetric sample
                (p / (1.0 - p)).ln() * 0.6
            })
            .collect();
        let w = OutputWarp::fit(&v);
        assert!((w.lambda - 1.0).abs() < 0.5, "{}", w.lambda);
    }

    #[test]
    fn falls_back_to_the_identity() {
        for v in [
            vec![1.0, 2.0],
            vec![3.0; 10],
            vec![1.0, f64::NAN, 2.0, 3.0, 4.0],
        ] {
            let w = OutputWarp::fit(&v);
            assert_eq!(w.lambda, 1.0, "{v:?}");
        }
        let w = OutputWarp::fit(&[5.0; 6]);
        assert_eq!(w.apply(5.0), 0.0);
    }
}
