//! A trust region for `bayes`'s later trials (after TuRBO, Eriksson et al. 2019, "Scalable
//! global optimization via local Bayesian optimization"): a box around the incumbent whose
//! side grows after a run of improvements and shrinks after a run of failures; the
//! acquisition's candidates are drawn inside it, so the model stops spending trials on far
//! corners it is unsure of once a good basin is found.
//!
//! The region is rebuilt from the trial history on every suggestion (no state is kept): the
//! finished trials are replayed in trial-number order, each one a success when it improved
//! the best feasible value by more than a small fraction of the values' range, a failure
//! otherwise, so a restarted daemon gets the same region.

use rand::Rng;

/// Side of a fresh region, in unit-cube units, before the length-scale weighting.
pub const INITIAL_LENGTH: f64 = 0.8;
/// The largest side.
pub const MAX_LENGTH: f64 = 1.6;
/// Below this side the region restarts at [`INITIAL_LENGTH`] (the basin is exhausted).
pub const MIN_LENGTH: f64 = 0.0078125;
/// Consecutive successes that double the side.
pub const SUCCESSES_TO_GROW: u32 = 3;
/// An improvement counts as a success when larger than this fraction of the range of the
/// values seen so far.
const SUCCESS_FRACTION: f64 = 1e-3;

/// The replayed region: its side and the counters that move it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustRegion {
    /// Current side, in unit-cube units before the length-scale weighting.
    pub length: f64,
    /// Consecutive successes so far.
    pub successes: u32,
    /// Consecutive failures so far.
    pub failures: u32,
}

impl TrustRegion {
    /// Replays `values` (one per finished trial in trial-number order; lower is better;
    /// `None` for a trial with no feasible value, which is a failure) and returns the region
    /// after them. The first `initial` trials only set the incumbent. `fail_after`
    /// consecutive failures halve the side (TuRBO: the number of parameters, at least 4).
    pub fn replay(values: &[Option<f64>], initial: usize, fail_after: u32) -> TrustRegion {
        let mut region = TrustRegion {
            length: INITIAL_LENGTH,
            successes: 0,
            failures: 0,
        };
        let mut best = f64::INFINITY;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for (k, v) in values.iter().enumerate() {
            let improved = match v {
                Some(v) if v.is_finite() => {
                    lo = lo.min(*v);
                    hi = hi.max(*v);
                    let margin = SUCCESS_FRACTION * (hi - lo);
                    let better = *v < best - margin;
                    best = best.min(*v);
                    better
                }
                _ => false,
            };
            if k < initial {
                continue;
            }
            region.step(improved, fail_after);
        }
        region
    }

    /// One trial's outcome.
    fn step(&mut self, improved: bool, fail_after: u32) {
        if improved {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        if self.successes >= SUCCESSES_TO_GROW {
            self.length = (2.0 * self.length).min(MAX_LENGTH);
            self.successes = 0;
        } else if self.failures >= fail_after.max(1) {
            self.length /= 2.0;
            self.failures = 0;
        }
        if self.length < MIN_LENGTH {
            self.length = INITIAL_LENGTH;
        }
    }

    /// Half-sides of the box per unit-cube coordinate: `length / 2` scaled by each ordered
    /// coordinate's length scale relative to their geometric mean (TuRBO's weighting: the
    /// box is long where the objective changes slowly). `scales[i]` is `None` for a
    /// categorical coordinate (not boxed: [`TrustRegion::sample`] keeps the centre's choice
    /// and resamples it now and then).
    pub fn half_sides(&self, scales: &[Option<f64>]) -> Vec<Option<f64>> {
        let logs: Vec<f64> = scales.iter().flatten().map(|s| s.max(1e-12).ln()).collect();
        let mean = if logs.is_empty() {
            0.0
        } else {
            logs.iter().sum::<f64>() / logs.len() as f64
        };
        scales
            .iter()
            .map(|s| s.map(|s| 0.5 * self.length * (s.max(1e-12).ln() - mean).exp()))
            .collect()
    }

    /// The region's box around `centre` (a unit-cube point), its half-sides from
    /// [`TrustRegion::half_sides`] of the length scales `scales`.
    pub fn around(&self, centre: Vec<f64>, scales: &[Option<f64>]) -> RegionBox {
        RegionBox {
            centre,
            half: self.half_sides(scales),
        }
    }
}

/// A trust region's box in the unit cube.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionBox {
    /// The best feasible observed point (lowest target).
    pub centre: Vec<f64>,
    /// Half-side per coordinate; `None` for a categorical.
    pub half: Vec<Option<f64>>,
}

impl RegionBox {
    /// Coordinate `i`'s side `(lo, hi)`, within [0, 1]; `None` for a categorical.
    pub fn side(&self, i: usize) -> Option<(f64, f64)> {
        let (c, h) = (self.centre[i], self.half[i]?);
        Some(((c - h).max(0.0), (c + h).min(1.0)))
    }

    /// `v` (a unit-cube point) with each ordered coordinate clamped to its side.
    pub fn clamp(&self, v: &mut [f64]) {
        for (i, x) in v.iter_mut().enumerate() {
            if let Some((lo, hi)) = self.side(i) {
                *x = x.clamp(lo, hi);
            }
        }
    }

    /// A point of the box: each ordered coordinate drawn uniformly in its side (clamped to
    /// [0, 1]) from `u`, one uniform draw per coordinate; a categorical keeps the centre's
    /// value except with probability `1 / dim`.
    pub fn sample<R: Rng>(&self, u: &[f64], rng: &mut R) -> Vec<f64> {
        let dim = self.centre.len().max(1) as f64;
        self.centre
            .iter()
            .zip(&self.half)
            .zip(u)
            .map(|((c, h), u)| match h {
                Some(h) => (c + (2.0 * u - 1.0) * h).clamp(0.0, 1.0),
                None => {
                    if rng.random::<f64>() < 1.0 / dim {
                        *u
                    } else {
                        *c
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn successes_grow_failures_shrink_and_a_collapse_restarts() {
        // Three improvements after the initial two: the side doubles.
        let v: Vec<Option<f64>> = [5.0, 4.0, 3.0, 2.0, 1.0].map(Some).to_vec();
        let r = TrustRegion::replay(&v, 2, 4);
        assert_eq!(r.length, 2.0 * INITIAL_LENGTH);
        // Four failures in a row halve it; a missing value is a failure.
        let v = vec![Some(1.0), Some(2.0), Some(3.0), None, Some(2.0), Some(4.0)];
        let r = TrustRegion::replay(&v, 2, 4);
        assert_eq!(r.length, INITIAL_LENGTH / 2.0);
        assert_eq!(r.failures, 0);
        // Seven halvings collapse it below the minimum: it restarts.
        let v = vec![Some(0.0); 1 + 4 * 7];
        let r = TrustRegion::replay(&v, 1, 4);
        assert_eq!(r.length, INITIAL_LENGTH);
        let v = vec![Some(0.0); 1 + 4 * 6];
        let r = TrustRegion::replay(&v, 1, 4);
        assert_eq!(r.length, INITIAL_LENGTH / 64.0);
    }

    #[test]
    fn a_negligible_improvement_is_a_failure() {
        // Range 10: an improvement of 0.001 is under 1e-3 of it.
        let v: Vec<Option<f64>> = [10.0, 0.0, -0.001].map(Some).to_vec();
        let r = TrustRegion::replay(&v, 2, 4);
        assert_eq!((r.successes, r.failures), (0, 1));
        let v: Vec<Option<f64>> = [10.0, 0.0, -0.1].map(Some).to_vec();
        let r = TrustRegion::replay(&v, 2, 4);
        assert_eq!((r.successes, r.failures), (1, 0));
    }

    #[test]
    fn the_box_is_long_where_the_length_scale_is_and_stays_in_the_cube() {
        let r = TrustRegion {
            length: 0.4,
            successes: 0,
            failures: 0,
        };
        let scales = [Some(0.5), Some(2.0), None];
        let half = r.half_sides(&scales);
        // Geometric mean 1: half-sides 0.2 × 0.5 and 0.2 × 2.
        assert!((half[0].unwrap() - 0.1).abs() < 1e-12);
        assert!((half[1].unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(half[2], None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for k in 0..200 {
            let u = [k as f64 / 199.0, 1.0 - k as f64 / 199.0, 0.9];
            let p = r.around(vec![0.95, 0.5, 0.1], &scales).sample(&u, &mut rng);
            assert!(p[0] >= 0.85 - 1e-12 && p[0] <= 1.0, "{p:?}");
            assert!(p[1] >= 0.1 - 1e-12 && p[1] <= 0.9 + 1e-12, "{p:?}");
            assert!(p[2] == 0.1 || p[2] == 0.9, "{p:?}");
        }
    }
}
