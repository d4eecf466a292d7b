//! The acquisition function of `bayes` and its maximizer.
//!
//! The acquisition is log expected improvement (Ament et al. 2023, "Unexpected Improvements to
//! Expected Improvement"), computed stably far into the tail so that the optimizer still sees a
//! slope where plain EI underflows to 0, plus the log probability that every constraint holds.
//! With no feasible observation yet it is the log probability of feasibility alone.
//!
//! The maximizer sweeps scrambled Sobol candidates and perturbations of the best observed
//! points, refines the best few with argmin L-BFGS over the continuous and relaxed-integer
//! features (categoricals held fixed, inputs kept in [0, 1] by a smooth periodic map), snaps
//! integers to values and then tries every neighbouring discrete value (all other choices of a
//! categorical, nearby integers) exactly.

use crate::encoding::Encoding;
use crate::gp::{minimize, Gp};
use crate::input_warp::InputWarp;
use argmin::core::{CostFunction, Error as ArgminError, Gradient};
use statrs::function::erf::erfc;
use std::cell::RefCell;
use std::f64::consts::{FRAC_1_SQRT_2, PI};

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// Below this z, `h(z) = φ(z) + zΦ(z)` and `Φ(z)` use asymptotic series.
const TAIL: f64 = -10.0;

/// The standard normal density.
pub fn norm_pdf(z: f64) -> f64 {
    (-0.5 * z * z - LN_SQRT_2PI).exp()
}

/// The standard normal distribution function.
pub fn norm_cdf(z: f64) -> f64 {
    0.5 * erfc(-z * FRAC_1_SQRT_2)
}

/// `Φ(-t)/φ(t)` (Mills' ratio) for `t ≥ 10`, and `t·(that)` subtracted from 1, by their
/// asymptotic series (accurate to ~1e-9 relative at t = 10, better beyond).
fn tail_series(t: f64) -> (f64, f64) {
    let u = 1.0 / (t * t);
    // R(t) = (1/t)(1 - u + 3u² - 15u³ + 105u⁴ - 945u⁵)
    let r = (1.0 + u * (-1.0 + u * (3.0 + u * (-15.0 + u * (105.0 - 945.0 * u))))) / t;
    // 1 - t R(t) = u - 3u² + 15u³ - 105u⁴ + 945u⁵ - 10395u⁶
    let s = u * (1.0 + u * (-3.0 + u * (15.0 + u * (-105.0 + u * (945.0 - 10395.0 * u)))));
    (r, s)
}

/// `ln Φ(z)` and its derivative `φ(z)/Φ(z)`.
pub fn log_norm_cdf(z: f64) -> (f64, f64) {
    if z > TAIL {
        let c = norm_cdf(z);
        (c.ln(), norm_pdf(z) / c)
    } else {
        let (r, _) = tail_series(-z);
        (-0.5 * z * z - LN_SQRT_2PI + r.ln(), 1.0 / r)
    }
}

/// `ln h(z)` with `h(z) = φ(z) + zΦ(z)` (expected improvement of a unit normal over `-z`), and
/// its derivative `Φ(z)/h(z)`.
pub fn log_h(z: f64) -> (f64, f64) {
    if z > TAIL {
        let (pdf, cdf) = (norm_pdf(z), norm_cdf(z));
        let h = (pdf + z * cdf).max(f64::MIN_POSITIVE);
        (h.ln(), cdf / h)
    } else {
        let (r, s) = tail_series(-z);
        (-0.5 * z * z - LN_SQRT_2PI + s.ln(), r / s)
    }
}

/// One constraint's model: its GP (on standardized values) and its bounds in the same units.
#[derive(Clone, Debug)]
pub struct ConstraintModel {
    /// The constraint metric's GP.
    pub gp: Gp,
    /// Lower bound (standardized), if any.
    pub min: Option<f64>,
    /// Upper bound (standardized), if any.
    pub max: Option<f64>,
}

impl ConstraintModel {
    /// `ln P(min ≤ c(x) ≤ max)` from mean `m` and variance `v`, with its derivatives in `m`
    /// and `v`.
    fn log_pof(&self, m: f64, v: f64) -> (f64, f64, f64) {
        let s = v.sqrt();
        match (self.min, self.max) {
            (None, None) => (0.0, 0.0, 0.0),
            (None, Some(hi)) => {
                let z = (hi - m) / s;
                let (l, d) = log_norm_cdf(z);
                (l, -d / s, -d * z / (2.0 * v))
            }
            (Some(lo), None) => {
                let z = (m - lo) / s;
                let (l, d) = log_norm_cdf(z);
                (l, d / s, -d * z / (2.0 * v))
            }
            (Some(lo), Some(hi)) => {
                let (zl, zu) = ((lo - m) / s, (hi - m) / s);
                let p = (norm_cdf(zu) - norm_cdf(zl)).max(1e-300);
                let (pu, pl) = (norm_pdf(zu), norm_pdf(zl));
                let dm = (-pu + pl) / (s * p);
                let dv = (-pu * zu + pl * zl) / (2.0 * v * p);
                (p.ln(), dm, dv)
            }
        }
    }
}

/// The model of what a trial costs (`bayes`'s `cost_metric`): a GP on the standardized log
/// cost, and the factor that turns its mean into the log of cost^α (the cost's standard
/// deviation in log units times the cost-cooling exponent α).
#[derive(Clone, Debug)]
pub struct CostModel {
    /// The log-cost GP (standardized).
    pub gp: Gp,
    /// `sd(ln cost) · α`: the acquisition subtracts `scale · mean` (EI / cost^α in logs; the
    /// log cost's mean is a constant and left out).
    pub scale: f64,
}

/// Log EI (over `best`, on a GP of losses) plus the log probability of feasibility.
#[derive(Clone, Debug)]
pub struct Acquisition {
    /// The loss model and the level to improve on (the best feasible loss, less the
    /// strategy's improvement margin); `None` until something feasible has been seen, when
    /// only feasibility is sought.
    pub objective: Option<(Gp, f64)>,
    /// The input warp of the objective's GP (its features are warped before it sees them;
    /// the constraints' GPs see them unwarped).
    pub warp: InputWarp,
    /// One model per constraint.
    pub constraints: Vec<ConstraintModel>,
    /// The cost model, when improvement is sought per unit of predicted cost.
    pub cost: Option<CostModel>,
}

impl Acquisition {
    /// The acquisition at features `x`, with its gradient when `grad`.
    pub fn evaluate(&self, x: &[f64], grad: bool) -> (f64, Vec<f64>) {
        let mut total = 0.0;
        let mut g = if grad { vec![0.0; x.len()] } else { Vec::new() };
        if let Some((gp, best)) = &self.objective {
            let p = if self.warp.is_identity() {
                gp.predict(x, grad)
            } else {
                let mut p = gp.predict(&self.warp.apply(x), grad);
                if grad {
                    self.warp.chain_gradient(x, &mut p.d_mean);
                    self.warp.chain_gradient(x, &mut p.d_var);
                }
                p
            };
            let s = p.var.sqrt();
            let z = (best - p.mean) / s;
            let (lh, dlh) = log_h(z);
            total += lh + s.ln();
            if grad {
                // z = (best - μ)/σ, ∂z/∂μ = -1/σ, ∂z/∂v = -z/(2v); ∂ln σ/∂v = 1/(2v).
                let dm = -dlh / s;
                let dv = -dlh * z / (2.0 * p.var) + 1.0 / (2.0 * p.var);
                for (gd, (a, b)) in g.iter_mut().zip(p.d_mean.iter().zip(&p.d_var)) {
                    *gd += dm * a + dv * b;
                }
            }
        }
        for c in &self.constraints {
            let p = c.gp.predict(x, grad);
            let (l, dm, dv) = c.log_pof(p.mean, p.var);
            total += l;
            if grad {
                for (gd, (a, b)) in g.iter_mut().zip(p.d_mean.iter().zip(&p.d_var)) {
                    *gd += dm * a + dv * b;
                }
            }
        }
        if let Some(c) = &self.cost {
            let p = c.gp.predict(x, grad);
            total -= c.scale * p.mean;
            if grad {
                for (gd, d) in g.iter_mut().zip(&p.d_mean) {
                    *gd -= c.scale * d;
                }
            }
        }
        if !total.is_finite() {
            total = -1e300;
            g.iter_mut().for_each(|v| *v = 0.0);
        }
        (total, g)
    }

    /// The acquisition at many points (row-major features, `dim` per point).
    pub fn evaluate_many(&self, xs: &[f64], dim: usize) -> Vec<f64> {
        let m = xs.len() / dim.max(1);
        let mut total = vec![0.0; m];
        if let Some((gp, best)) = &self.objective {
            let warped;
            let xs_objective = if self.warp.is_identity() {
                xs
            } else {
                warped = self.warp.apply(xs);
                &warped
            };
            for (t, (mean, var)) in total.iter_mut().zip(gp.predict_many(xs_objective)) {
                let s = var.sqrt();
                *t += log_h((best - mean) / s).0 + s.ln();
            }
        }
        for c in &self.constraints {
            for (t, (mean, var)) in total.iter_mut().zip(c.gp.predict_many(xs)) {
                *t += c.log_pof(mean, var).0;
            }
        }
        if let Some(c) = &self.cost {
            for (t, mean) in total.iter_mut().zip(c.gp.predict_means(xs)) {
                *t -= c.scale * mean;
            }
        }
        for t in &mut total {
            if !t.is_finite() {
                *t = -1e300;
            }
        }
        total
    }
}

/// A cached evaluation: `z`, the cost there and its gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// The negative acquisition over unconstrained `z` for the movable features, the others held:
/// feature `f = lo + (hi - lo)(1 - cos πz)/2` stays in its bounds `[lo, hi]` (the unit
/// interval, or a trust region's side) whatever L-BFGS does.
struct Refine<'a> {
    acq: &'a Acquisition,
    base: Vec<f64>,
    movable: &'a [usize],
    /// `(lo, hi)` of each movable feature, in the order of `movable`.
    bounds: Vec<(f64, f64)>,
    /// The last `z` evaluated, with the cost and gradient there: argmin asks for both at the
    /// same point in separate calls, and one posterior evaluation gives both.
    cache: RefCell<Option<Evaluation>>,
}

impl Refine<'_> {
    fn features(&self, z: &[f64]) -> Vec<f64> {
        let mut x = self.base.clone();
        for ((f, zi), (lo, hi)) in self.movable.iter().zip(z).zip(&self.bounds) {
            x[*f] = lo + (hi - lo) * 0.5 * (1.0 - (PI * zi).cos());
        }
        x
    }

    fn z_of(f: f64, (lo, hi): (f64, f64)) -> f64 {
        let t = if hi > lo { (f - lo) / (hi - lo) } else { 0.5 };
        (1.0 - 2.0 * t.clamp(0.0, 1.0)).acos() / PI
    }

    /// Cost (the negative acquisition) and its gradient in `z`.
    fn evaluate(&self, z: &[f64]) -> (f64, Vec<f64>) {
        if let Some((at, c, g)) = self.cache.borrow().as_ref() {
            if at.as_slice() == z {
                return (*c, g.clone());
            }
        }
        let (v, g) = self.acq.evaluate(&self.features(z), true);
        let gz: Vec<f64> = self
            .movable
            .iter()
            .zip(z)
            .zip(&self.bounds)
            .map(|((f, zi), (lo, hi))| -g[*f] * (hi - lo) * 0.5 * PI * (PI * zi).sin())
            .collect();
        *self.cache.borrow_mut() = Some((z.to_vec(), -v, gz.clone()));
        (-v, gz)
    }
}

impl CostFunction for Refine<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, z: &Vec<f64>) -> Result<f64, ArgminError> {
        Ok(self.evaluate(z).0)
    }
}

impl Gradient for Refine<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, z: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        Ok(self.evaluate(z).1)
    }
}

/// Settings of the maximizer.
#[derive(Clone, Debug)]
pub struct Search {
    /// Candidates to start from (unit-cube points): Sobol sweep and local perturbations.
    pub candidates: Vec<Vec<f64>>,
    /// How many candidates L-BFGS refines: the best one, the ones listed in `always`, and the
    /// rest drawn by roulette (probability ∝ acquisition ratio to the best, as Optuna's
    /// GPSampler does), so the starts are spread over several promising basins rather than
    /// clustered around one.
    pub refine: usize,
    /// Indices of candidates always refined (e.g. the best observed point).
    pub always: Vec<usize>,
    /// Uniform draws in [0, 1) for the roulette (at least `refine` of them); passed in so this
    /// module stays free of random state.
    pub roulette: Vec<f64>,
    /// L-BFGS iterations per refinement.
    pub max_iters: u64,
    /// `(lo, hi)` per model feature that refinement keeps a movable feature in (a trust
    /// region's box); `None`: the unit interval.
    pub bounds: Option<Vec<(f64, f64)>>,
}

/// The candidates to refine: the best, then `always`, then roulette draws without replacement.
fn refine_starts(values: &[f64], order: &[usize], search: &Search) -> Vec<usize> {
    let mut starts: Vec<usize> = Vec::new();
    if let Some(&best) = order.first() {
        starts.push(best);
    }
    for &i in &search.always {
        if i < values.len() && !starts.contains(&i) {
            starts.push(i);
        }
    }
    let top = order.first().map_or(0.0, |&b| values[b]);
    let mut weights: Vec<f64> = values.iter().map(|v| (v - top).exp()).collect();
    for &i in &starts {
        weights[i] = 0.0;
    }
    let mut draws = search.roulette.iter();
    while starts.len() < search.refine.max(1) {
        let total: f64 = weights.iter().sum();
        let Some(r) = draws.next() else { break };
        if total.is_nan() || total <= 0.0 {
            break;
        }
        let mut acc = 0.0;
        let target = r * total;
        let mut pick = None;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if *w > 0.0 && acc >= target {
                pick = Some(i);
                break;
            }
        }
        let Some(i) = pick.or_else(|| weights.iter().rposition(|w| *w > 0.0)) else {
            break;
        };
        weights[i] = 0.0;
        starts.push(i);
    }
    starts
}

/// Maximizes the acquisition; returns the best unit-cube point (on the space's values: integers
/// snapped, categoricals one-hot) that is not in `taken`, and its acquisition value. `None`
/// only when there are no candidates.
pub fn maximize(
    acq: &Acquisition,
    encoding: &Encoding,
    search: &Search,
    taken: &[Vec<f64>],
) -> Option<(Vec<f64>, f64)> {
    let dim = encoding.features();
    let mut flat = Vec::with_capacity(search.candidates.len() * dim);
    for u in &search.candidates {
        encoding.encode_into(u, &mut flat);
    }
    let values = acq.evaluate_many(&flat, dim);
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));

    let mut pool: Vec<(Vec<f64>, f64)> = Vec::new();
    let movable = encoding.movable();
    let starts = refine_starts(&values, &order, search);
    for &i in &starts {
        let mut best = (encoding.decode(&flat[i * dim..(i + 1) * dim]), values[i]);
        if !movable.is_empty() && search.max_iters > 0 {
            let base = flat[i * dim..(i + 1) * dim].to_vec();
            let bounds: Vec<(f64, f64)> = movable
                .iter()
                .map(|f| search.bounds.as_ref().map_or((0.0, 1.0), |b| b[*f]))
                .collect();
            let z0: Vec<f64> = movable
                .iter()
                .zip(&bounds)
                .map(|(f, b)| Refine::z_of(base[*f], *b))
                .collect();
            let problem = Refine {
                acq,
                base,
                movable: &movable,
                bounds,
                cache: RefCell::new(None),
            };
            if let Some((z, _)) = minimize(&problem, z0, search.max_iters) {
                let unit = encoding.decode(&problem.features(&z));
                let v = acq.evaluate(&encoding.encode(&unit), false).0;
                if v > best.1 {
                    best = (unit, v);
                }
            }
        }
        // Exact moves in the discrete parameters, one at a time, while they help.
        for _ in 0..3 {
            let mut improved = false;
            for n in encoding.neighbours(&best.0) {
                let v = acq.evaluate(&encoding.encode(&n), false).0;
                if v > best.1 {
                    best = (n, v);
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
        pool.push(best);
    }
    // Then the rest of the sweep, as fallbacks when refined points are all taken.
    for &i in order.iter().filter(|i| !starts.contains(i)) {
        pool.push((encoding.decode(&flat[i * dim..(i + 1) * dim]), values[i]));
    }
    pool.sort_by(|a, b| b.1.total_cmp(&a.1));
    let is_taken = |u: &Vec<f64>| {
        taken
            .iter()
            .any(|t| t.iter().zip(u).all(|(a, b)| (a - b).abs() < 1e-12))
    };
    pool.iter()
        .find(|(u, _)| !is_taken(u))
        .or_else(|| pool.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// With an input warp on the objective's GP, the acquisition's gradient is still the
    /// gradient of its value in the unwarped features (what L-BFGS moves).
    #[test]
    fn the_warped_acquisition_gradient_matches_finite_differences() {
        use crate::gp::Hyper;
        use crate::input_warp::InputWarp;
        let x = [0.1, 0.2, 0.5, 0.9, 0.8, 0.4, 0.3, 0.7];
        let y = [0.3, -0.5, 0.8, -1.2];
        let hyper = Hyper {
            theta: vec![-0.7, -0.3, 0.0, (0.01f64).ln()],
        };
        let warp = InputWarp::from_shapes(vec![Some((0.5, 1.0)), Some((1.0, 2.0))]);
        let gp = Gp::new(&warp.apply(&x), 2, &y, &hyper).unwrap();
        let acq = Acquisition {
            objective: Some((gp, -1.0)),
            warp,
            constraints: vec![],
            cost: None,
        };
        for at in [[0.3, 0.6], [0.05, 0.9], [0.7, 0.15]] {
            let (v, g) = acq.evaluate(&at, true);
            assert!(close(acq.evaluate_many(&at, 2)[0], v, 1e-12));
            for f in 0..2 {
                let (mut hi, mut lo) = (at, at);
                hi[f] += 1e-6;
                lo[f] -= 1e-6;
                let fd = (acq.evaluate(&hi, false).0 - acq.evaluate(&lo, false).0) / 2e-6;
                assert!(
                    close(g[f], fd, 1e-4),
                    "{at:?} feature {f}: {} vs {fd}",
                    g[f]
                );
            }
        }
    }

    #[test]
    fn log_h_is_smooth_across_the_tail_switch() {
        // Direct evaluation at moderate z.
        for z in [-3.0f64, -1.0, 0.0, 0.5, 2.0, 8.0] {
            let h = norm_pdf(z) + z * norm_cdf(z);
            assert!(close(log_h(z).0, h.ln(), 1e-12), "{z}");
        }
        // Continuity at the switch, value and slope.
        let (a, da) = log_h(TAIL + 1e-9);
        let (b, db) = log_h(TAIL - 1e-9);
        assert!(close(a, b, 1e-8), "{a} vs {b}");
        assert!(close(da, db, 1e-6), "{da} vs {db}");
        // Far tail: finite and with slope ≈ -z (h(z) ≈ φ(z)/z²).
        let (v, d) = log_h(-200.0);
        assert!(v.is_finite() && v < -2e4);
        assert!(close(d, 200.0, 1e-3), "{d}");
        // The derivative matches finite differences everywhere.
        for z in [-40.0f64, -10.5, -9.5, -2.0, 0.3, 5.0] {
            let e = 1e-6;
            let fd = (log_h(z + e).0 - log_h(z - e).0) / (2.0 * e);
            assert!(close(log_h(z).1, fd, 1e-5), "{z}: {} vs {fd}", log_h(z).1);
            let fd = (log_norm_cdf(z + e).0 - log_norm_cdf(z - e).0) / (2.0 * e);
            assert!(close(log_norm_cdf(z).1, fd, 1e-5), "{z}");
        }
        let (a, _) = log_norm_cdf(TAIL + 1e-9);
        let (b, _) = log_norm_cdf(TAIL - 1e-9);
        assert!(close(a, b, 1e-8));
    }
}
