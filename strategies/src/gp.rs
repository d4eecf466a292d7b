//! Gaussian-process regression for `bayes`: a Matérn-5/2 kernel with one length scale per input
//! (ARD), a learned signal variance and noise, hyperparameters by maximum a-posteriori marginal
//! likelihood (argmin L-BFGS in log space, several starts), and the posterior mean and variance
//! with their input gradients for the acquisition optimizer.
//!
//! Inputs are model features in [0, 1] (see [`crate::encoding`]); outputs are expected to be
//! standardized by the caller, so the prior mean is 0.

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use nalgebra::{Cholesky, DMatrix, DVector, Dyn};
use std::cell::RefCell;
use std::sync::OnceLock;

const SQRT5: f64 = 2.236_067_977_499_79;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The smallest noise variance (relative to the standardized output's unit variance). Keeps
/// the kernel matrix well conditioned when two observations nearly coincide, and acts as a
/// nugget on noise-free objectives: with 1e-6 the model became so sure of itself near the
/// optimum that parallel suggestions (kriging believer) collapsed onto one point. 1e-4 is
/// about where the fit's clamp on the log noise used to hold it (1e-6 + e^-9).
pub const NOISE_FLOOR: f64 = 1e-4;

/// Bounds every log-hyperparameter stays within; the priors keep the fit well inside them.
const LOG_BOUND: f64 = 9.0;

/// Lower bound of the log noise above [`NOISE_FLOOR`]: low enough that the noise reaches the
/// floor smoothly. On a deterministic objective the likelihood keeps pushing the noise down;
/// its gradient in the log noise is ∝ `e^θ` and vanishes long before this bound, so L-BFGS
/// converges. With the log noise clamped at `−LOG_BOUND` like the other hyperparameters, the
/// optimum sat on the clamp's kink and L-BFGS spent most of a fit's evaluations there (86
/// per fit at 50 points and 5 features in the latency benchmark, after the pessimistic prior
/// mean of `bayes`; 53 before it).
const NOISE_LOG_LOW: f64 = -40.0;

/// The box of log-hyperparameter `i` (of `dim + 2`): the log noise may go lower than the rest.
fn bounds(i: usize, dim: usize) -> (f64, f64) {
    if i == dim + 1 {
        (NOISE_LOG_LOW, LOG_BOUND)
    } else {
        (-LOG_BOUND, LOG_BOUND)
    }
}

/// Kernel hyperparameters in log space: `dim` log length scales, then the log signal variance,
/// then the log of the noise variance above [`NOISE_FLOOR`].
#[derive(Clone, Debug, PartialEq)]
pub struct Hyper {
    /// The log-space vector (length `dim + 2`).
    pub theta: Vec<f64>,
}

impl Hyper {
    /// Number of inputs.
    pub fn dim(&self) -> usize {
        self.theta.len() - 2
    }

    /// `1 / ℓ_d²` for every input.
    pub fn inv_sq_lengthscales(&self) -> Vec<f64> {
        self.theta[..self.dim()]
            .iter()
            .map(|l| (-2.0 * l).exp())
            .collect()
    }

    /// The signal (output-scale) variance.
    pub fn signal(&self) -> f64 {
        self.theta[self.dim()].exp()
    }

    /// The noise variance.
    pub fn noise(&self) -> f64 {
        NOISE_FLOOR + self.theta[self.dim() + 1].exp()
    }
}

/// Priors on the hyperparameters, as Optuna's GPSampler sets them (they did best of the
/// variants tried on the comparison problems, see docs/STRATEGIES.md):
/// - each inverse squared length scale `λ = 1/ℓ²`: `ln p = −0.1 (λ + 1/λ)`, i.e.
///   `−0.2 cosh(2 ln ℓ)` — flat near ℓ = 1 (the width of the unit cube), steep for length scales
///   below ~0.2 or above ~5;
/// - the signal variance: Gamma(2, 1) (mode 1: outputs are standardized);
/// - the noise variance: Gamma(1.1, 30) (mean 0.037, mode 0.003 of the output variance).
///
/// Densities are taken on the variables themselves while optimizing in log space (MAP in that
/// parameterization, as Optuna does).
#[derive(Clone, Debug, PartialEq)]
pub struct Prior {
    /// Number of inputs.
    pub dim: usize,
}

impl Prior {
    /// The default prior for `dim` inputs.
    pub fn default_for(dim: usize) -> Self {
        Prior { dim }
    }

    /// Where the fit starts (Optuna's default): every length scale, the signal variance and
    /// the noise variance 1.
    pub fn start(&self) -> Hyper {
        let mut theta = vec![0.0; self.dim];
        theta.extend([0.0, (1.0 - NOISE_FLOOR).ln()]);
        Hyper { theta }
    }

    /// `−ln p(θ)` (up to a constant) and its gradient in θ.
    fn neg_log_density(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let d = self.dim;
        let mut grad = vec![0.0; d + 2];
        let mut cost = 0.0;
        for (t, g) in theta[..d].iter().zip(&mut grad) {
            // λ + 1/λ = e^{-2t} + e^{2t}.
            let (a, b) = ((-2.0 * t).exp(), (2.0 * t).exp());
            cost += 0.1 * (a + b);
            *g = 0.1 * (-2.0 * a + 2.0 * b);
        }
        // Gamma(2, 1) on s² = e^{t}: ln p = ln s² − s².
        let s2 = theta[d].exp();
        cost -= theta[d] - s2;
        grad[d] = -(1.0 - s2);
        // Gamma(1.1, 30) on σ² = floor + e^{t}: ln p = 0.1 ln σ² − 30 σ².
        let e = theta[d + 1].exp();
        let noise = NOISE_FLOOR + e;
        cost -= 0.1 * noise.ln() - 30.0 * noise;
        grad[d + 1] = -(0.1 / noise - 30.0) * e;
        (cost, grad)
    }
}

/// Matérn-5/2 correlation of `r² ≥ 0`: returns `(m, g)` with `m = (1 + √5 r + 5r²/3) e^{-√5 r}`
/// and `g = (5/3)(1 + √5 r) e^{-√5 r}`, so that `dm/d(r²) = -g / 2`.
#[inline]
fn matern52(r2: f64) -> (f64, f64) {
    let r = r2.max(0.0).sqrt();
    let e = (-SQRT5 * r).exp();
    let a = 1.0 + SQRT5 * r;
    ((a + 5.0 / 3.0 * r2) * e, 5.0 / 3.0 * a * e)
}

/// [`matern52`] over a slice, in place: each `r²` in `values` becomes `scale · m`, and `grads`
/// (when given, as long as `values`) gets `scale · g`. (`wide`'s vectorized `exp` was tried
/// here: at this crate's baseline target features it was slower than libm's.)
fn matern52_many(values: &mut [f64], scale: f64, mut grads: Option<&mut [f64]>) {
    for (i, v) in values.iter_mut().enumerate() {
        let (m, g) = matern52(*v);
        *v = scale * m;
        if let Some(grads) = grads.as_deref_mut() {
            grads[i] = scale * g;
        }
    }
}

/// A Gaussian process conditioned on data, with its factorization cached for predictions.
#[derive(Clone, Debug)]
pub struct Gp {
    dim: usize,
    /// Training inputs, row-major `n × dim`.
    x: Vec<f64>,
    inv_ls2: Vec<f64>,
    signal: f64,
    /// `Lᵀ` for the lower Cholesky factor `L` of `K + noise·I`: its column-major storage is
    /// `L` row-major, what [`lower_inverse_by_columns`] reads.
    l_t: DMatrix<f64>,
    /// `L⁻¹` (lower triangular, column-major), computed at the first variance asked for (a
    /// GP asked only for means, [`Gp::predict_mean`], never needs it): a prediction is a
    /// product with it, a dense matrix product for a batch and contiguous axpys and dot
    /// products for one point (about 1.5 times faster than nalgebra's column-by-column
    /// triangular solves, where the suggestion latency benchmark spent a quarter of its
    /// time).
    linv: OnceLock<DMatrix<f64>>,
    /// `(K + noise·I)⁻¹ y`.
    alpha: DVector<f64>,
}

/// What the posterior says about one input, with gradients when asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Posterior mean of the latent function.
    pub mean: f64,
    /// Posterior variance of the latent function (≥ a tiny floor).
    pub var: f64,
    /// `∂mean/∂x` (empty unless requested).
    pub d_mean: Vec<f64>,
    /// `∂var/∂x` (empty unless requested).
    pub d_var: Vec<f64>,
}

/// The smallest posterior variance reported (keeps `σ` and its logarithm finite).
const VAR_FLOOR: f64 = 1e-12;

impl Gp {
    /// Conditions the process on `n = y.len()` points `x` (row-major, `dim` columns). Adds
    /// diagonal jitter if the matrix is numerically singular; `None` if even that fails.
    pub fn new(x: &[f64], dim: usize, y: &[f64], hyper: &Hyper) -> Option<Gp> {
        Gp::with_exact_tail(x, dim, y, hyper, y.len())
    }

    /// [`Gp::new`], with the points from index `exact_from` on treated as noise-free (only
    /// [`NOISE_FLOOR`]): fantasies for pending trials, which must pin the posterior down.
    pub fn with_exact_tail(
        x: &[f64],
        dim: usize,
        y: &[f64],
        hyper: &Hyper,
        exact_from: usize,
    ) -> Option<Gp> {
        Gp::with_known_noise(x, dim, y, hyper, &[], exact_from)
    }

    /// [`Gp::with_exact_tail`] with a known noise variance per point on top of the fitted one
    /// (heteroscedastic: measured run-to-run spreads). `known[i]` is added to point `i`'s
    /// diagonal; points past `known.len()` get none. The noise-free tail stays noise-free.
    pub fn with_known_noise(
        x: &[f64],
        dim: usize,
        y: &[f64],
        hyper: &Hyper,
        known: &[f64],
        exact_from: usize,
    ) -> Option<Gp> {
        let n = y.len();
        debug_assert_eq!(x.len(), n * dim);
        let inv_ls2 = hyper.inv_sq_lengthscales();
        let signal = hyper.signal();
        let noise = hyper.noise();
        let mut k = DMatrix::<f64>::zeros(n, n);
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            let xi = &x[i * dim..(i + 1) * dim];
            row.clear();
            row.extend((0..i).map(|j| scaled_sq_dist(xi, &x[j * dim..(j + 1) * dim], &inv_ls2)));
            matern52_many(&mut row, signal, None);
            for (j, v) in row.iter().enumerate() {
                k[(i, j)] = *v;
                k[(j, i)] = *v;
            }
            k[(i, i)] = signal
                + if i < exact_from {
                    noise + known.get(i).copied().unwrap_or(0.0)
                } else {
                    NOISE_FLOOR
                };
        }
        let chol = cholesky_with_jitter(k, signal)?;
        let alpha = chol.solve(&DVector::from_column_slice(y));
        Some(Gp {
            dim,
            x: x.to_vec(),
            inv_ls2,
            signal,
            l_t: chol.l().transpose(),
            linv: OnceLock::new(),
            alpha,
        })
    }

    /// `L⁻¹`, computed once: column j of it is row j of [`lower_inverse_by_columns`] of the
    /// row-major `L`.
    fn linv(&self) -> &DMatrix<f64> {
        self.linv.get_or_init(|| {
            let n = self.len();
            DMatrix::from_vec(n, n, lower_inverse_by_columns(self.l_t.as_slice(), n))
        })
    }

    /// The kernel column `k*(x)` (scaled by the signal), and `g` of each entry when `grads`.
    fn kernel_column(&self, x: &[f64], grads: Option<&mut [f64]>) -> Vec<f64> {
        let dim = self.dim;
        let mut kstar: Vec<f64> = (0..self.len())
            .map(|i| scaled_sq_dist(x, &self.x[i * dim..(i + 1) * dim], &self.inv_ls2))
            .collect();
        matern52_many(&mut kstar, self.signal, grads);
        kstar
    }

    /// The posterior mean at `x` alone, exactly [`Gp::predict`]'s (`O(n · dim)`: no
    /// variance, no `L⁻¹`).
    pub fn predict_mean(&self, x: &[f64]) -> f64 {
        dot(&self.kernel_column(x, None), self.alpha.as_slice())
    }

    /// Number of conditioning points.
    pub fn len(&self) -> usize {
        self.alpha.len()
    }

    /// Whether the process has no data (never true for a built `Gp`).
    pub fn is_empty(&self) -> bool {
        self.alpha.is_empty()
    }

    /// Posterior mean and variance at `x`; with `grad`, also their gradients in `x`.
    pub fn predict(&self, x: &[f64], grad: bool) -> Prediction {
        let n = self.len();
        let dim = self.dim;
        // g_i (Matérn derivative factor) per training point, for the gradients.
        let mut gs = if grad { vec![0.0; n] } else { Vec::new() };
        let kstar = self.kernel_column(x, grad.then_some(gs.as_mut_slice()));
        let mean = dot(&kstar, self.alpha.as_slice());
        // v = L⁻¹ k* = Σ_j k*_j · (column j of L⁻¹, zero before j).
        let linv = self.linv().as_slice();
        let mut v = vec![0.0; n];
        for (j, kj) in kstar.iter().enumerate() {
            for (vi, lij) in v[j..].iter_mut().zip(&linv[j * n + j..(j + 1) * n]) {
                *vi += kj * lij;
            }
        }
        let var = (self.signal - dot(&v, &v)).max(VAR_FLOOR);
        if !grad {
            return Prediction {
                mean,
                var,
                d_mean: Vec::new(),
                d_var: Vec::new(),
            };
        }
        // K⁻¹ k* = L⁻ᵀ v: entry j is column j of L⁻¹ dotted with v.
        let w: Vec<f64> = (0..n)
            .map(|j| dot(&linv[j * n + j..(j + 1) * n], &v[j..]))
            .collect();
        let mut d_mean = vec![0.0; dim];
        let mut d_var = vec![0.0; dim];
        for i in 0..n {
            let xi = &self.x[i * dim..(i + 1) * dim];
            let (a, b) = (gs[i] * self.alpha[i], gs[i] * w[i]);
            for d in 0..dim {
                // ∂k_i/∂x_d = -s² g (x_d - X_id) / ℓ_d².
                let dk = -(x[d] - xi[d]) * self.inv_ls2[d];
                d_mean[d] += a * dk;
                d_var[d] += -2.0 * b * dk;
            }
        }
        Prediction {
            mean,
            var,
            d_mean,
            d_var,
        }
    }

    /// Posterior means and variances at many points at once (row-major, `dim` columns): the
    /// kernel columns of every point times `L⁻¹` in one dense matrix product.
    pub fn predict_many(&self, xs: &[f64]) -> Vec<(f64, f64)> {
        let kstar = self.kernel_columns(xs);
        if kstar.ncols() == 0 {
            return Vec::new();
        }
        let means = kstar.tr_mul(&self.alpha);
        // Column c of `L⁻¹ · kstar` is L⁻¹ k*(x_c), whose squared norm is what the prior
        // variance loses.
        let v = self.linv() * &kstar;
        v.column_iter()
            .zip(means.iter())
            .map(|(column, mean)| (*mean, (self.signal - column.norm_squared()).max(VAR_FLOOR)))
            .collect()
    }

    /// The posterior means of [`Gp::predict_many`] alone, exactly its (no variances, no
    /// `L⁻¹`).
    pub fn predict_means(&self, xs: &[f64]) -> Vec<f64> {
        let kstar = self.kernel_columns(xs);
        if kstar.ncols() == 0 {
            return Vec::new();
        }
        kstar.tr_mul(&self.alpha).iter().copied().collect()
    }

    /// The kernel columns `k*(x_c)` of every point of `xs` (row-major, `dim` columns), one
    /// column per point.
    fn kernel_columns(&self, xs: &[f64]) -> DMatrix<f64> {
        let n = self.len();
        let dim = self.dim;
        let m = xs.len() / dim.max(1);
        let mut kstar = DMatrix::<f64>::zeros(n, m);
        for (c, column) in kstar.as_mut_slice().chunks_exact_mut(n.max(1)).enumerate() {
            let xc = &xs[c * dim..(c + 1) * dim];
            for (i, k) in column.iter_mut().enumerate() {
                *k = scaled_sq_dist(xc, &self.x[i * dim..(i + 1) * dim], &self.inv_ls2);
            }
            matern52_many(column, self.signal, None);
        }
        kstar
    }
}

/// `Σ a_i b_i`, in four independent lanes so the compiler can vectorize it.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The log marginal likelihood `ln p(y | X, θ) = −½ yᵀK⁻¹y − ½ ln|K| − (n/2) ln 2π` of a GP
/// with `hyper`'s signal and noise (plus `known[i]` on point `i`'s diagonal, if given), from
/// the scaled squared distances `r2` of every pair `j < i`, in the order `(1,0), (2,0),
/// (2,1), (3,0), …` (index `i(i−1)/2 + j`). For comparing input warps at fixed
/// hyperparameters without rebuilding the distances ([`crate::input_warp`]). `None` when the
/// kernel matrix is not positive definite.
pub fn log_marginal_from_distances(
    r2: &[f64],
    y: &[f64],
    hyper: &Hyper,
    known: &[f64],
) -> Option<f64> {
    let n = y.len();
    debug_assert_eq!(r2.len(), n * n.saturating_sub(1) / 2);
    let (signal, noise) = (hyper.signal(), hyper.noise());
    let mut kv = r2.to_vec();
    matern52_many(&mut kv, signal, None);
    let mut k = lower_kernel_matrix(&kv, n, signal + noise, known);
    if !cholesky_in_place(&mut k, n) {
        return None;
    }
    let mut b = y.to_vec();
    solve_lower_in_place(&k, n, &mut b);
    let fit: f64 = b.iter().map(|v| v * v).sum();
    let log_det: f64 = (0..n).map(|i| k[i * n + i].ln()).sum();
    Some(-0.5 * fit - log_det - 0.5 * n as f64 * LN_2PI)
}

/// The lower triangle of a row-major `n × n` kernel matrix from its pair values `kv` (in the
/// order `(1,0), (2,0), (2,1), …`), with `diagonal + known[i]` on the diagonal (`known` may
/// be shorter: 0 past its end); the upper triangle stays 0.
fn lower_kernel_matrix(kv: &[f64], n: usize, diagonal: f64, known: &[f64]) -> Vec<f64> {
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        let p0 = i * i.saturating_sub(1) / 2;
        k[i * n..i * n + i].copy_from_slice(&kv[p0..p0 + i]);
        k[i * n + i] = diagonal + known.get(i).copied().unwrap_or(0.0);
    }
    k
}

/// Cholesky factorization of the row-major symmetric `n × n` matrix whose lower triangle is in
/// `a`, in place (the lower triangle becomes `L`). `false` if not positive definite.
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for i in 0..n {
        for j in 0..=i {
            let (head, row_i) = a.split_at_mut(i * n);
            let s = if j < i {
                dot(&row_i[..j], &head[j * n..j * n + j])
            } else {
                dot(&row_i[..j], &row_i[..j])
            };
            let v = row_i[j] - s;
            if j == i {
                if v <= 0.0 || !v.is_finite() {
                    return false;
                }
                row_i[i] = v.sqrt();
            } else {
                row_i[j] = v / head[j * n + j];
            }
        }
    }
    true
}

/// Solves `L x = b` in place (row-major lower `L`).
fn solve_lower_in_place(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = dot(&l[i * n..i * n + i], &b[..i]);
        b[i] = (b[i] - s) / l[i * n + i];
    }
}

/// Solves `Lᵀ x = b` in place (row-major lower `L`).
fn solve_upper_t_in_place(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        b[i] /= l[i * n + i];
        let bi = b[i];
        for k in 0..i {
            b[k] -= l[i * n + k] * bi;
        }
    }
}

/// `L⁻¹` of the row-major lower triangular `l`, stored by columns: row `j` of the result is
/// column `j` of `L⁻¹` (zero before index `j`), so every step is a contiguous dot product.
/// Read as a column-major matrix, the result is `L⁻¹` itself.
fn lower_inverse_by_columns(l: &[f64], n: usize) -> Vec<f64> {
    let mut t = vec![0.0; n * n];
    for j in 0..n {
        let row = j * n;
        t[row + j] = 1.0 / l[j * n + j];
        for i in j + 1..n {
            let s = dot(&l[i * n + j..i * n + i], &t[row + j..row + i]);
            t[row + i] = -s / l[i * n + i];
        }
    }
    t
}

/// `(L Lᵀ)⁻¹` from the row-major lower factor, row-major, lower triangle filled (the upper is
/// not). Through `T = L⁻ᵀ` stored by rows, so both steps are contiguous dot products.
fn inverse_from_cholesky(l: &[f64], n: usize) -> Vec<f64> {
    let t = lower_inverse_by_columns(l, n);
    // K⁻¹_ij = Σ_k L⁻¹_ki L⁻¹_kj = Σ_{k ≥ i} t[i][k] t[j][k] for j ≤ i.
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            inv[i * n + j] = dot(&t[i * n + i..i * n + n], &t[j * n + i..j * n + n]);
        }
    }
    inv
}

/// `Σ_d (a_d - b_d)² / ℓ_d²`.
#[inline]
fn scaled_sq_dist(a: &[f64], b: &[f64], inv_ls2: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .zip(inv_ls2)
        .map(|((x, y), w)| (x - y) * (x - y) * w)
        .sum()
}

/// Cholesky factorization, retrying with growing diagonal jitter (relative to `scale`) when
/// the matrix is numerically not positive definite.
fn cholesky_with_jitter(k: DMatrix<f64>, scale: f64) -> Option<Cholesky<f64, Dyn>> {
    if let Some(c) = Cholesky::new(k.clone()) {
        return Some(c);
    }
    let n = k.nrows();
    for jitter in [1e-8, 1e-6, 1e-4, 1e-2] {
        let mut kj = k.clone();
        for i in 0..n {
            kj[(i, i)] += jitter * scale.max(1e-12);
        }
        if let Some(c) = Cholesky::new(kj) {
            return Some(c);
        }
    }
    None
}

/// A cached evaluation: the hyperparameters, the cost there and its gradient.
type Evaluation = (Vec<f64>, f64, Vec<f64>);

/// The negative log posterior of the hyperparameters (negative log marginal likelihood plus
/// negative log prior, up to a constant) and its gradient, for argmin.
///
/// argmin asks for the cost and the gradient in separate calls, usually at the same point; both
/// come out of one factorization, so the last evaluation is cached.
pub struct Objective<'a> {
    n: usize,
    dim: usize,
    y: Vec<f64>,
    /// Known noise variance per point, added to the diagonal (empty: none).
    known: Vec<f64>,
    /// Squared input differences of every pair j < i (in the order `(1,0), (2,0), (2,1),
    /// …`), by input: input `d`'s are at `d·pairs..(d+1)·pairs`. Input-major so that the
    /// scaled distances and the length-scale gradients are long contiguous sums over the
    /// pairs, which vectorize (pair-major, the inner loops ran over a dozen inputs).
    pair_sq: Vec<f64>,
    prior: &'a Prior,
    cache: RefCell<Option<Evaluation>>,
}

impl<'a> Objective<'a> {
    /// The objective for data `x` (row-major, `dim` columns) and standardized `y`.
    pub fn new(x: &[f64], dim: usize, y: &[f64], prior: &'a Prior) -> Self {
        Objective::with_known_noise(x, dim, y, &[], prior)
    }

    /// [`Objective::new`] with a known noise variance per point on top of the fitted one
    /// (see [`Gp::with_known_noise`]).
    pub fn with_known_noise(
        x: &[f64],
        dim: usize,
        y: &[f64],
        known: &[f64],
        prior: &'a Prior,
    ) -> Self {
        let n = y.len();
        let pairs = n * n.saturating_sub(1) / 2;
        let mut pair_sq = Vec::with_capacity(pairs * dim);
        for d in 0..dim {
            for i in 0..n {
                for j in 0..i {
                    let diff = x[i * dim + d] - x[j * dim + d];
                    pair_sq.push(diff * diff);
                }
            }
        }
        Objective {
            n,
            dim,
            y: y.to_vec(),
            known: known.to_vec(),
            pair_sq,
            prior,
            cache: RefCell::new(None),
        }
    }

    /// Cost and gradient at `theta`; `None` when the kernel matrix cannot be factorized.
    pub fn evaluate(&self, theta: &[f64]) -> Option<(f64, Vec<f64>)> {
        if let Some((t, c, g)) = self.cache.borrow().as_ref() {
            if t.as_slice() == theta {
                return Some((*c, g.clone()));
            }
        }
        let result = self.compute(theta)?;
        *self.cache.borrow_mut() = Some((theta.to_vec(), result.0, result.1.clone()));
        Some(result)
    }

    fn compute(&self, theta: &[f64]) -> Option<(f64, Vec<f64>)> {
        let (n, dim) = (self.n, self.dim);
        if theta.iter().any(|t| !t.is_finite()) {
            return None;
        }
        // Evaluate the likelihood at the box-clamped point; a quadratic penalty outside the
        // box pulls the optimizer back in (argmin's L-BFGS has no bounds).
        let clamped: Vec<f64> = theta
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (lo, hi) = bounds(i, dim);
                t.clamp(lo, hi)
            })
            .collect();
        let hyper = Hyper { theta: clamped };
        let inv_ls2 = hyper.inv_sq_lengthscales();
        let signal = hyper.signal();
        let noise = hyper.noise();
        let npairs = n * n.saturating_sub(1) / 2;
        let sq = |d: usize| &self.pair_sq[d * npairs..(d + 1) * npairs];
        let mut r2 = vec![0.0; npairs];
        for (d, w) in inv_ls2.iter().enumerate() {
            for (r, s) in r2.iter_mut().zip(sq(d)) {
                *r += s * w;
            }
        }
        let mut kv = r2;
        let mut gv = vec![0.0; npairs];
        matern52_many(&mut kv, signal, Some(&mut gv));
        let mut k = lower_kernel_matrix(&kv, n, signal + noise, &self.known);
        // Row-major lower factor; every inner loop below is a contiguous dot product.
        if !cholesky_in_place(&mut k, n) {
            return None;
        }
        let l = &k;
        let mut alpha = self.y.clone();
        solve_lower_in_place(l, n, &mut alpha);
        solve_upper_t_in_place(l, n, &mut alpha);
        let log_det: f64 = 2.0 * (0..n).map(|i| l[i * n + i].ln()).sum::<f64>();
        let nlml = 0.5 * dot(&self.y, &alpha) + 0.5 * log_det + 0.5 * n as f64 * LN_2PI;
        let kinv = inverse_from_cholesky(l, n);
        // ∂nlml/∂θ = -½ tr(W ∂K/∂θ) with W = ααᵀ - K⁻¹.
        let mut grad = vec![0.0; dim + 2];
        let mut d_signal = 0.0;
        let mut d_noise = 0.0;
        // wg[p] = W_ij g_ij for pair p = (i, j): the length-scale gradients are its dot
        // products with each input's squared differences.
        let mut wg = Vec::with_capacity(npairs);
        for i in 0..n {
            let wii = alpha[i] * alpha[i] - kinv[i * n + i];
            d_signal += 0.5 * wii * signal;
            d_noise += 0.5 * wii * (noise - NOISE_FLOOR);
            let p0 = wg.len();
            for j in 0..i {
                let w = alpha[i] * alpha[j] - kinv[i * n + j];
                d_signal += w * kv[p0 + j];
                wg.push(w * gv[p0 + j]);
            }
        }
        for (d, (g, w)) in grad.iter_mut().zip(&inv_ls2).enumerate() {
            *g = -dot(&wg, sq(d)) * w;
        }
        grad[dim] = -d_signal;
        grad[dim + 1] = -d_noise;
        for (i, (g, t)) in grad.iter_mut().zip(theta).enumerate() {
            let (lo, hi) = bounds(i, dim);
            if !(lo..=hi).contains(t) {
                *g = 0.0;
            }
        }
        // Inside the box the clamp is the identity; outside it the likelihood is flat and the
        // penalty's gradient takes over.
        let (prior_cost, prior_grad) = self.prior.neg_log_density(&hyper.theta);
        let mut cost = nlml + prior_cost;
        for (i, ((t, g), pg)) in theta
            .iter()
            .zip(grad.iter_mut())
            .zip(prior_grad)
            .enumerate()
        {
            let (lo, hi) = bounds(i, dim);
            if (lo..=hi).contains(t) {
                *g += pg;
            }
            let over = (t - hi).max(lo - t);
            if over > 0.0 {
                cost += 50.0 * over * over;
                *g += 100.0 * over * if *t > hi { 1.0 } else { -1.0 };
            }
        }
        if !cost.is_finite() {
            return None;
        }
        Some((cost, grad))
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Self::Param) -> Result<f64, ArgminError> {
        self.evaluate(theta)
            .map(|(c, _)| c)
            .ok_or_else(|| ArgminError::msg("kernel matrix not positive definite"))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, theta: &Self::Param) -> Result<Vec<f64>, ArgminError> {
        self.evaluate(theta)
            .map(|(_, g)| g)
            .ok_or_else(|| ArgminError::msg("kernel matrix not positive definite"))
    }
}

/// Above this many points, [`fit`] runs L-BFGS only from the start with the best initial cost.
const SINGLE_START_ABOVE: usize = 30;

/// Fits the hyperparameters by MAP: L-BFGS from each start, keeping the best. Returns the
/// winner and its cost; `None` if no start could even be evaluated.
pub fn fit(
    x: &[f64],
    dim: usize,
    y: &[f64],
    prior: &Prior,
    starts: &[Hyper],
    max_iters: u64,
) -> Option<(Hyper, f64)> {
    fit_with_known_noise(x, dim, y, &[], prior, starts, max_iters)
}

/// [`fit`] with a known noise variance per point on top of the fitted one (see
/// [`Gp::with_known_noise`]).
pub fn fit_with_known_noise(
    x: &[f64],
    dim: usize,
    y: &[f64],
    known: &[f64],
    prior: &Prior,
    starts: &[Hyper],
    max_iters: u64,
) -> Option<(Hyper, f64)> {
    let objective = Objective::with_known_noise(x, dim, y, known, prior);
    let mut best: Option<(Hyper, f64)> = None;
    // With enough data the starts agree; only the most promising one is run then.
    let mut starts: Vec<(&Hyper, f64)> = starts
        .iter()
        .filter_map(|s| Some((s, objective.evaluate(&s.theta)?.0)))
        .collect();
    if y.len() > SINGLE_START_ABOVE {
        starts.sort_by(|a, b| a.1.total_cmp(&b.1));
        starts.truncate(1);
    }
    for (start, c0) in starts {
        let mut candidate = (start.theta.clone(), c0);
        if let Some((theta, c)) = minimize(&objective, start.theta.clone(), max_iters) {
            if c < candidate.1 {
                candidate = (theta, c);
            }
        }
        if best.as_ref().is_none_or(|b| candidate.1 < b.1) {
            best = Some((
                Hyper {
                    theta: candidate
                        .0
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let (lo, hi) = bounds(i, dim);
                            t.clamp(lo, hi)
                        })
                        .collect(),
                },
                candidate.1,
            ));
        }
    }
    best
}

/// Runs argmin's L-BFGS on any cost-and-gradient problem from `start`; the best point seen and
/// its cost, or `None` if the run failed outright.
pub fn minimize<P>(problem: &P, start: Vec<f64>, max_iters: u64) -> Option<(Vec<f64>, f64)>
where
    P: CostFunction<Param = Vec<f64>, Output = f64>
        + Gradient<Param = Vec<f64>, Gradient = Vec<f64>>,
{
    let problem = Borrowed(problem);
    let linesearch = MoreThuenteLineSearch::new();
    let solver = LBFGS::new(linesearch, 7)
        .with_tolerance_grad(1e-5)
        .ok()?
        .with_tolerance_cost(1e-9)
        .ok()?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(start).max_iters(max_iters))
        .timer(false)
        .run()
        .ok()?;
    let state = result.state();
    let cost = state.get_best_cost();
    let param = state.get_best_param()?.clone();
    cost.is_finite().then_some((param, cost))
}

/// Lends a problem to argmin, which wants to own it, so the caller keeps its cache.
struct Borrowed<'a, P>(&'a P);

impl<P: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for Borrowed<'_, P> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Vec<f64>) -> Result<f64, ArgminError> {
        self.0.cost(p)
    }
}

impl<P: Gradient<Param = Vec<f64>, Gradient = Vec<f64>>> Gradient for Borrowed<'_, P> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, ArgminError> {
        self.0.gradient(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(ls: &[f64], signal: f64, noise: f64) -> Hyper {
        let mut theta: Vec<f64> = ls.iter().map(|l: &f64| l.ln()).collect();
        theta.push(signal.ln());
        theta.push((noise - NOISE_FLOOR).ln());
        Hyper { theta }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn flat_factorization_and_inverse() {
        // A = [[4, 2, 0.4], [2, 5, 1], [0.4, 1, 3]] (lower triangle given).
        let a = [4.0, 0.0, 0.0, 2.0, 5.0, 0.0, 0.4, 1.0, 3.0];
        let mut l = a;
        assert!(cholesky_in_place(&mut l, 3));
        let full = |i: usize, j: usize| if j <= i { a[i * 3 + j] } else { a[j * 3 + i] };
        let inv = inverse_from_cholesky(&l, 3);
        for i in 0..3 {
            for j in 0..3 {
                let lo = |r: usize, c: usize| {
                    if c <= r {
                        inv[r * 3 + c]
                    } else {
                        inv[c * 3 + r]
                    }
                };
                let e: f64 = (0..3).map(|k| full(i, k) * lo(k, j)).sum();
                assert!((e - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        let mut b = [1.0, 2.0, 3.0];
        solve_lower_in_place(&l, 3, &mut b);
        solve_upper_t_in_place(&l, 3, &mut b);
        for i in 0..3 {
            let e: f64 = (0..3).map(|k| full(i, k) * b[k]).sum();
            assert!((e - [1.0, 2.0, 3.0][i]).abs() < 1e-12);
        }
        let mut singular = [1.0, 0.0, 1.0, 0.0];
        singular[2] = 1.0;
        singular[3] = 1.0;
        assert!(!cholesky_in_place(&mut singular, 2));
    }

    #[test]
    fn matern_values() {
        assert_eq!(matern52(0.0), (1.0, 5.0 / 3.0));
        // r = 1: (1 + √5 + 5/3) e^{-√5} = 0.523994…
        let (m, _) = matern52(1.0);
        assert!(close(m, 0.523_994_108_5, 1e-9), "{m}");
    }

    #[test]
    fn posterior_matches_a_hand_worked_case() {
        // Two 1-D points x = 0 and x = 1, y = (1, -1), ℓ = 1, s² = 1, σ² = 0.01.
        // k(0, 1) = ρ = 0.523994…; K = [[1.01, ρ], [ρ, 1.01]].
        // At x* = 0.5: k* = (m(0.5), m(0.5)) with m(0.5) = (1 + √5/2 + 5/12) e^{-√5/2}.
        // By symmetry the mean is 0 and the variance is 1 - 2 m² / (1.01 + ρ).
        // At x* = 0: k* = (1, ρ); mean = k*ᵀ K⁻¹ y = (1 - ρ) / (1.01 - ρ) (since y = (1, -1)
        // is an eigenvector of K with eigenvalue 1.01 - ρ).
        let h = hyper(&[1.0], 1.0, 0.01);
        let gp = Gp::new(&[0.0, 1.0], 1, &[1.0, -1.0], &h).unwrap();
        let rho = 0.523_994_108_5;
        let m = (1.0 + SQRT5 / 2.0 + 5.0 / 12.0) * (-SQRT5 / 2.0).exp();
        let mid = gp.predict(&[0.5], false);
        assert!(mid.mean.abs() < 1e-12, "{}", mid.mean);
        assert!(close(mid.var, 1.0 - 2.0 * m * m / (1.01 + rho), 1e-9));
        let at0 = gp.predict(&[0.0], false);
        assert!(
            close(at0.mean, (1.0 - rho) / (1.01 - rho), 1e-9),
            "{}",
            at0.mean
        );
        // Variance at a data point: 1 - k*ᵀ K⁻¹ k*, worked through the eigen-decomposition:
        // k* = ((1+ρ)/2)(1,1) + ((1-ρ)/2)(1,-1); eigenvalues 1.01 ± ρ.
        let v = 1.0
            - (1.0 + rho).powi(2) / (2.0 * (1.01 + rho))
            - (1.0 - rho).powi(2) / (2.0 * (1.01 - rho));
        assert!(close(at0.var, v, 1e-9), "{} vs {v}", at0.var);
        // Far away: the prior.
        let far = gp.predict(&[50.0], false);
        assert!(far.mean.abs() < 1e-12 && close(far.var, 1.0, 1e-12));
        // The batched path agrees.
        let many = gp.predict_many(&[0.5, 0.0, 50.0]);
        assert!(close(many[0].1, mid.var, 1e-12) && close(many[1].0, at0.mean, 1e-12));
        assert!(close(many[1].1, at0.var, 1e-9));
    }

    #[test]
    fn the_log_marginal_likelihood_matches_a_hand_worked_case() {
        // Two points 1 apart, length scale 1, signal 1, noise 0.01, known noise 0.09 on the
        // second: r² = 1, ρ = matern52(1), K = [[1.01, ρ], [ρ, 1.10]], y = (1, −1):
        // yᵀK⁻¹y = (1.10 + 2ρ + 1.01) / det, ln p = −½ yᵀK⁻¹y − ½ ln det − ln 2π.
        let h = hyper(&[1.0], 1.0, 0.01);
        let rho: f64 = 0.523_994_108_5;
        let det = 1.01 * 1.10 - rho * rho;
        let quad = (1.10 + 2.0 * rho + 1.01) / det;
        let want = -0.5 * quad - 0.5 * det.ln() - LN_2PI;
        let got = log_marginal_from_distances(&[1.0], &[1.0, -1.0], &h, &[0.0, 0.09]).unwrap();
        assert!(close(got, want, 1e-9), "{got} vs {want}");
        // Without known noise, the same as the fit's objective less its prior term.
        let got = log_marginal_from_distances(&[1.0], &[1.0, -1.0], &h, &[]).unwrap();
        let det = 1.01 * 1.01 - rho * rho;
        let want = -0.5 * (2.02 + 2.0 * rho) / det - 0.5 * det.ln() - LN_2PI;
        assert!(close(got, want, 1e-9), "{got} vs {want}");
    }

    #[test]
    fn heteroscedastic_posterior_matches_a_hand_worked_case() {
        // The two points of the case above, now with known noise 0.09 on x = 1 only:
        // K = [[1.01, ρ], [ρ, 1.10]], det = 1.01·1.10 − ρ² = 0.836430,
        // K⁻¹ = [[1.10, −ρ], [−ρ, 1.01]] / det, α = K⁻¹ (1, −1) = (1.10 + ρ, −ρ − 1.01) / det.
        // At x* = 0, k* = (1, ρ):
        //   mean = α₀ + ρ α₁ = (1.10 − 0.01 ρ − ρ²) / det = 0.980585,
        //   var = 1 − k*ᵀ K⁻¹ k* = 1 − (1.10 − 0.99 ρ²) / det = 0.009865.
        let h = hyper(&[1.0], 1.0, 0.01);
        let gp = Gp::with_known_noise(&[0.0, 1.0], 1, &[1.0, -1.0], &h, &[0.0, 0.09], 2).unwrap();
        let rho: f64 = 0.523_994_108_5;
        let det = 1.01 * 1.10 - rho * rho;
        let kinv = [[1.10 / det, -rho / det], [-rho / det, 1.01 / det]];
        let alpha = [kinv[0][0] - kinv[0][1], kinv[1][0] - kinv[1][1]];
        let kstar = [1.0, rho];
        let mean = kstar[0] * alpha[0] + kstar[1] * alpha[1];
        let quad = (0..2)
            .map(|i| {
                (0..2)
                    .map(|j| kstar[i] * kinv[i][j] * kstar[j])
                    .sum::<f64>()
            })
            .sum::<f64>();
        assert!(close(mean, (1.10 - 0.01 * rho - rho * rho) / det, 1e-12));
        assert!(close(mean, 0.980_585, 1e-5) && close(1.0 - quad, 0.009_865, 1e-3));
        let at0 = gp.predict(&[0.0], false);
        assert!(close(at0.mean, mean, 1e-9), "{} vs {mean}", at0.mean);
        assert!(
            close(at0.var, 1.0 - quad, 1e-9),
            "{} vs {}",
            at0.var,
            1.0 - quad
        );
        // The noisier point is trusted less: the mean at x = 1 stays further from its −1 than
        // the mean at x = 0 from its 1, which the homoscedastic case has symmetric.
        let at1 = gp.predict(&[1.0], false);
        assert!(1.0 + at1.mean > 1.0 - at0.mean, "{} {}", at0.mean, at1.mean);
        let homo = Gp::new(&[0.0, 1.0], 1, &[1.0, -1.0], &h).unwrap();
        assert!(close(
            homo.predict(&[1.0], false).mean,
            -homo.predict(&[0.0], false).mean,
            1e-12
        ));
        // No known noise is the homoscedastic GP.
        let zero = Gp::with_known_noise(&[0.0, 1.0], 1, &[1.0, -1.0], &h, &[0.0, 0.0], 2).unwrap();
        assert_eq!(zero.predict(&[0.3], false), homo.predict(&[0.3], false));
        // The likelihood sees the known noise too: its gradient still matches finite
        // differences.
        let (x, y) = data(12, 2);
        let known: Vec<f64> = (0..12).map(|i| 0.02 * (i % 3) as f64).collect();
        let prior = Prior::default_for(2);
        let obj = Objective::with_known_noise(&x, 2, &y, &known, &prior);
        let theta = vec![-0.3, 0.2, 0.1, -2.0];
        let (c, g) = obj.evaluate(&theta).unwrap();
        for k in 0..4 {
            let mut t = theta.clone();
            t[k] += 1e-6;
            let (c2, _) = obj.evaluate(&t).unwrap();
            assert!(
                close((c2 - c) / 1e-6, g[k], 1e-4),
                "{k}: {} vs {}",
                (c2 - c) / 1e-6,
                g[k]
            );
        }
        let plain = Objective::new(&x, 2, &y, &prior)
            .evaluate(&theta)
            .unwrap()
            .0;
        assert!(c != plain);
    }

    fn data(n: usize, dim: usize) -> (Vec<f64>, Vec<f64>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let row: Vec<f64> = (0..dim)
                .map(|d| ((i * 7 + d * 13) % 17) as f64 / 17.0 + 0.01 * d as f64)
                .collect();
            y.push(
                row.iter()
                    .enumerate()
                    .map(|(d, v)| ((d + 1) as f64 * v).sin())
                    .sum(),
            );
            x.extend(row);
        }
        (x, y)
    }

    #[test]
    fn likelihood_gradient_matches_finite_differences() {
        let (x, y) = data(12, 3);
        let prior = Prior::default_for(3);
        let obj = Objective::new(&x, 3, &y, &prior);
        for theta in [
            vec![-0.5, 0.2, 0.7, 0.3, -3.0],
            vec![0.1, -1.0, 0.0, -0.5, -6.0],
            vec![2.5, 0.0, 0.0, 0.0, -2.0],
        ] {
            let (_, g) = obj.evaluate(&theta).unwrap();
            for k in 0..theta.len() {
                let h = 1e-6;
                let mut a = theta.clone();
                a[k] += h;
                let mut b = theta.clone();
                b[k] -= h;
                let fd = (obj.evaluate(&a).unwrap().0 - obj.evaluate(&b).unwrap().0) / (2.0 * h);
                assert!(close(g[k], fd, 1e-5), "θ{k}: {} vs {fd}", g[k]);
            }
        }
    }

    #[test]
    fn prediction_gradient_matches_finite_differences() {
        let (x, y) = data(15, 3);
        let h = hyper(&[0.3, 0.5, 0.8], 1.3, 0.01);
        let gp = Gp::new(&x, 3, &y, &h).unwrap();
        let at = [0.31, 0.47, 0.52];
        let p = gp.predict(&at, true);
        for d in 0..3 {
            let e = 1e-6;
            let mut a = at;
            a[d] += e;
            let mut b = at;
            b[d] -= e;
            let (pa, pb) = (gp.predict(&a, false), gp.predict(&b, false));
            let fd_mean = (pa.mean - pb.mean) / (2.0 * e);
            let fd_var = (pa.var - pb.var) / (2.0 * e);
            assert!(
                close(p.d_mean[d], fd_mean, 1e-5),
                "{} vs {fd_mean}",
                p.d_mean[d]
            );
            assert!(
                close(p.d_var[d], fd_var, 1e-5),
                "{} vs {fd_var}",
                p.d_var[d]
            );
        }
    }

    #[test]
    fn fit_improves_the_posterior_and_finds_irrelevant_inputs() {
        // y depends on the first input only: the fitted length scale of the second is longer.
        let n = 30;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = (i as f64 * 0.618_034) % 1.0;
            let b = (i as f64 * 0.414_213_5) % 1.0;
            x.extend([a, b]);
            y.push((6.0 * a).sin());
        }
        let mean = y.iter().sum::<f64>() / n as f64;
        let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let ys: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
        let prior = Prior::default_for(2);
        let start = prior.start();
        let obj = Objective::new(&x, 2, &ys, &prior);
        let c0 = obj.evaluate(&start.theta).unwrap().0;
        let (h, c) = fit(&x, 2, &ys, &prior, &[start], 100).unwrap();
        assert!(c < c0, "{c} !< {c0}");
        assert!(h.theta[1] > h.theta[0] + 0.5, "{:?}", h.theta);
        let gp = Gp::new(&x, 2, &ys, &h).unwrap();
        let p = gp.predict(&[0.25, 0.9], false);
        let truth = ((6.0f64 * 0.25).sin() - mean) / sd;
        assert!((p.mean - truth).abs() < 0.1, "{} vs {truth}", p.mean);
        // Noise-free data: the noise goes down to the floor (smoothly: no clamp in the way).
        assert!(h.noise() < 1.01 * NOISE_FLOOR, "noise {}", h.noise());
    }

    #[test]
    fn batched_predictions_match_single_ones() {
        let (x, y) = data(40, 3);
        let h = hyper(&[0.3, 0.5, 0.8], 1.3, 0.01);
        let gp = Gp::new(&x, 3, &y, &h).unwrap();
        let xs: Vec<f64> = (0..150 * 3)
            .map(|k| ((k * 37) % 101) as f64 / 100.0)
            .collect();
        let many = gp.predict_many(&xs);
        assert_eq!(many.len(), 150);
        for (c, (mean, var)) in many.iter().enumerate() {
            let one = gp.predict(&xs[c * 3..(c + 1) * 3], false);
            assert!(close(*mean, one.mean, 1e-9), "{c}: {mean} vs {}", one.mean);
            assert!(close(*var, one.var, 1e-9), "{c}: {var} vs {}", one.var);
        }
        // The mean-only paths are the same arithmetic, bit for bit, and need no L⁻¹.
        let fresh = Gp::new(&x, 3, &y, &h).unwrap();
        let means = fresh.predict_means(&xs);
        for (c, (mean, _)) in many.iter().enumerate() {
            assert_eq!(means[c], *mean);
            let one = fresh.predict_mean(&xs[c * 3..(c + 1) * 3]);
            assert_eq!(one, gp.predict(&xs[c * 3..(c + 1) * 3], false).mean);
        }
        assert!(fresh.linv.get().is_none());
        assert!(gp.predict_means(&[]).is_empty() && gp.predict_many(&[]).is_empty());
    }

    #[test]
    fn duplicate_points_still_factorize() {
        let h = hyper(&[0.5], 1.0, NOISE_FLOOR * 1.000_001);
        let gp = Gp::new(&[0.3, 0.3, 0.3], 1, &[1.0, 1.0, 1.0], &h).unwrap();
        let p = gp.predict(&[0.3], true);
        assert!(p.mean.is_finite() && p.var > 0.0);
    }
}
