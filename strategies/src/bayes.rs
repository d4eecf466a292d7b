//! `bayes`: Gaussian-process Bayesian optimization, the default strategy.
//!
//! One suggestion, from scratch, out of the history (nothing is kept between calls, so a
//! restarted daemon suggests what it would have):
//! 1. The first `initial_trials` trials are scrambled Sobol points (the study's sequence).
//! 2. Finished trials become GP training data: objective losses (several objectives are
//!    combined by a random augmented-Chebyshev scalarization per trial, ParEGO), failed,
//!    pruned and metric-less infeasible trials imputed at the worst loss seen (so their region
//!    is avoided and they are not proposed again), then (one objective) warped by a fitted
//!    Yeo-Johnson transform ([`crate::warp`]) and standardized, and shifted so that the worst
//!    is 0, the prior mean (`pessimistic_prior`). With `measured_noise` and trials that
//!    report `<objective>_spread`, each such trial gets a known noise from the spreads
//!    (heteroscedastic GP, [`known_noise`]) and the targets are standardized, not warped.
//! 3. Matérn-5/2 ARD kernel hyperparameters by MAP (argmin L-BFGS); then (one objective)
//!    each linear-scale float and integer range may be input-warped by a Kumaraswamy CDF chosen by
//!    marginal likelihood ([`crate::input_warp`]), and the hyperparameters are refitted on
//!    the warped features when any is. Each
//!    constraint metric gets its own GP, fitted the same way on every trial that reported it
//!    (infeasible ones included).
//! 4. Pending trials are added as kriging-believer fantasies: observed at the posterior mean, so
//!    the mean is unchanged but the variance collapses around them and the next suggestion
//!    goes elsewhere.
//! 5. Log expected improvement (over the incumbent less one noise standard deviation with one
//!    objective, the incumbent's known noise included, `improvement_margin`) × probability of
//!    feasibility is maximized (see
//!    [`crate::acquisition`]).
//!
//! Large histories are handled by subset of data: the hyperparameters are fitted on at most
//! [`MAX_FIT`] trials and the posterior is conditioned on at most [`MAX_CONDITION`], chosen as the
//! best half by loss plus an even spread of the rest (all trials when there are fewer).
//! Anything that cannot be modelled (too little data, a singular kernel matrix) falls back to
//! the Sobol point of the trial with a note saying why.

use crate::acquisition::{maximize, Acquisition, ConstraintModel, CostModel, Search};
use crate::encoding::Encoding;
use crate::gp::{fit_with_known_noise, Gp, Hyper, Prior};
use crate::history::{self, Evidence, Point};
use crate::input_warp::InputWarp;
use crate::sobol::SobolStrategy;
use crate::space::Params;
use crate::strategy::{mix, Strategy, StrategyError, SuggestContext, Suggestion};
use crate::trust_region::{RegionBox, TrustRegion};
use crate::warp::OutputWarp;
use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// Most trials the hyperparameters are fitted on.
pub const MAX_FIT: usize = 50;
/// Most trials the posterior is conditioned on.
pub const MAX_CONDITION: usize = 200;
/// Sobol candidates swept per suggestion.
const SWEEP: u64 = 1024;
/// Candidates refined by L-BFGS per suggestion.
const REFINE: usize = 6;
/// Perturbed copies of each of the best observed points.
const LOCAL: usize = 24;
/// How many best observed points are perturbed.
const LOCAL_CENTRES: usize = 4;
/// Most points the input warp's shapes are compared on ([`crate::input_warp`]).
const WARP_POINTS: usize = 32;
/// L-BFGS iterations of a hyperparameter fit.
const FIT_ITERS: u64 = 30;
/// Weight of the linear term of the augmented Chebyshev scalarization (ParEGO's ρ).
const PAREGO_RHO: f64 = 0.05;

/// Gaussian-process Bayesian optimization (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BayesStrategy {
    /// Sobol points before the model is used.
    pub initial_trials: u64,
    /// Use the trials' measured spreads (`<objective>_spread`) as known per-trial noise
    /// (heteroscedastic GP, see [`known_noise`]); it changes nothing for a study whose trials
    /// report no spread, or with several objectives. On by default: on the noisy QAT
    /// surrogate (`examples/noisy_qat.rs`) it ranks the true best of the same trials first
    /// more often than a fitted constant noise, and its first-ranked trial is truly faster
    /// (docs/STRATEGIES.md).
    pub measured_noise: bool,
    /// A metric the trials report that measures what a trial cost (`strategy.cost_metric`,
    /// e.g. `train_s`): expected improvement is then divided by the predicted cost raised to
    /// a power that falls from 1 to 0 over the study's trials (cost cooling, see
    /// [`cost_exponent`]), so early trials favour cheap configurations and the last ones
    /// ignore cost. `None`: plain expected improvement.
    pub cost_metric: Option<String>,
    /// Input-warp linear-scale floats and integer ranges ([`crate::input_warp`]). Off by
    /// default: it won on badly scaled synthetic problems and on Bayesmark (100.55 against
    /// 100.14) but lost on `bench/compare` (72.0 against 73.1; docs/STRATEGIES.md).
    pub input_warp: bool,
    /// Maximize the acquisition inside a trust region around the incumbent
    /// ([`crate::trust_region`]) in the second half of a single-objective study's
    /// `max_trials`. On by default: on Bayesmark it scored 100.23 against 99.58 without it
    /// (paired seeds, 25 problems × 2 repeats; a gap about the size of the run-to-run noise),
    /// and 73.6 against 73.4 on `bench/compare` (docs/STRATEGIES.md, step 10).
    pub trust_region: bool,
}

impl Default for BayesStrategy {
    /// What the registry builds for `strategy.kind = "bayes"` with the default options.
    fn default() -> Self {
        BayesStrategy {
            initial_trials: 8,
            measured_noise: true,
            cost_metric: None,
            input_warp: false,
            trust_region: true,
        }
    }
}

impl Strategy for BayesStrategy {
    fn name(&self) -> &'static str {
        "bayes"
    }

    fn suggest(&self, ctx: &SuggestContext<'_>) -> Result<Params, StrategyError> {
        Ok(self.suggest_with_note(ctx)?.params)
    }

    fn suggest_with_note(&self, ctx: &SuggestContext<'_>) -> Result<Suggestion, StrategyError> {
        let space_filling = |note: Option<String>| history::space_filling(ctx, note);
        if ctx.trial_number < self.initial_trials {
            return Ok(space_filling(None));
        }
        match model_point(ctx, self) {
            Ok(unit) => Ok(Suggestion {
                params: ctx.space.from_unit(&unit),
                note: None,
            }),
            Err(reason) => Ok(space_filling(Some(format!(
                "bayes: {reason}; suggested the next space-filling (Sobol) point instead"
            )))),
        }
    }
}

/// The model's suggestion as a unit-cube point, or why there is none.
fn model_point(ctx: &SuggestContext<'_>, strategy: &BayesStrategy) -> Result<Vec<f64>, String> {
    let measured_noise = strategy.measured_noise;
    if ctx.objectives.is_empty() {
        return Err("the study has no objective to model".into());
    }
    let points = history::points(ctx);
    let measured = points
        .iter()
        .filter(|p| matches!(p.evidence, Evidence::Measured { .. }))
        .count();
    if measured < 2 {
        return Err(format!(
            "{measured} finished trial(s) with metrics, the model needs 2"
        ));
    }
    let encoding = Encoding::new(ctx.space);
    let dim = encoding.features();
    let mut rng = ctx.rng(0xba7e5);
    let ObjectiveFit {
        targets,
        y_all,
        known,
        hyper,
        x_cond,
        y_cond,
        known_cond,
        warp,
    } = fit_objective(
        ctx,
        &points,
        &encoding,
        (measured_noise, strategy.input_warp),
        &mut rng,
    )?;
    let noisy = known.iter().any(|v| *v > 0.0);

    let pending: Vec<Vec<f64>> = history::pending_units(ctx);
    let mut x_pend = Vec::with_capacity(pending.len() * dim);
    for u in &pending {
        encoding.encode_into(u, &mut x_pend);
    }
    let x_pend_objective = warp.apply(&x_pend);
    let objective_gp = believer(
        &x_cond,
        dim,
        &y_cond,
        &known_cond,
        &x_pend_objective,
        &hyper,
    )
    .ok_or("the objective model could not be conditioned (singular kernel matrix)")?;

    // The incumbent: the best feasible (standardized) target; with measured noise, the best
    // posterior mean among the feasible trials (a lucky draw of a noisy trial is not a level
    // to beat).
    // Its known noise variance sets the improvement margin.
    let (best, best_known) = points
        .iter()
        .zip(y_all.iter().zip(&known))
        .filter(|(p, _)| matches!(p.evidence, Evidence::Measured { feasible: true, .. }))
        .map(|(p, (y, k))| {
            let value = if noisy {
                objective_gp.predict_mean(&warp.apply(&encoding.encode(&p.unit)))
            } else {
                *y
            };
            (value, *k)
        })
        .fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a });

    let mut constraints = Vec::new();
    for (c, constraint) in ctx.constraints.iter().enumerate() {
        if constraint.min.is_none() && constraint.max.is_none() {
            continue;
        }
        if let Some(model) = constraint_model(&points, c, constraint, &encoding, &x_pend) {
            constraints.push(model);
        }
    }
    // Kriging believer: the fantasies count as observations, also for the incumbent (else a
    // pending point predicted better than the best so far keeps its full improvement and the
    // next suggestion lands on it again). A fantasy counts when every constraint model expects
    // it feasible.
    let mut best = best;
    if best.is_finite() {
        for (k, m) in objective_gp
            .predict_means(&x_pend_objective)
            .into_iter()
            .enumerate()
        {
            let x = &x_pend[k * dim..(k + 1) * dim];
            let feasible = constraints.iter().all(|c: &ConstraintModel| {
                let mean = c.gp.predict_mean(x);
                c.min.is_none_or(|lo| mean >= lo) && c.max.is_none_or(|hi| mean <= hi)
            });
            if feasible {
                best = best.min(m);
            }
        }
    }
    let target = best - improvement_margin(&hyper, ctx.objectives.len(), best_known);
    let objective = best.is_finite().then_some((objective_gp, target));
    if objective.is_none() && constraints.is_empty() {
        return Err("no feasible trial yet and no constraint metrics to model".into());
    }
    let cost = match (&strategy.cost_metric, &objective) {
        (Some(metric), Some(_)) => {
            cost_model(ctx, &points, metric, strategy.initial_trials, &encoding)
        }
        _ => None,
    };
    let acq = Acquisition {
        objective,
        warp,
        constraints,
        cost,
    };

    let mut taken: Vec<Vec<f64>> = points
        .iter()
        .map(|p| encoding.decode(&encoding.encode(&p.unit)))
        .collect();
    taken.extend(pending.iter().map(|u| encoding.decode(&encoding.encode(u))));
    let region = if strategy.trust_region && ctx.objectives.len() == 1 {
        region_box(
            ctx,
            &points,
            &targets,
            strategy.initial_trials,
            &encoding,
            &hyper,
        )
    } else {
        None
    };
    let candidates = candidates(ctx, &points, &targets, region.as_ref(), &mut rng);
    // Refinement stays in the box too: the region bounds where the acquisition is maximized.
    let bounds = region.as_ref().map(|r| {
        let mut b = vec![(0.0, 1.0); encoding.features()];
        for (i, f) in encoding.ordered_features().iter().enumerate() {
            if let (Some(f), Some(side)) = (f, r.side(i)) {
                b[*f] = side;
            }
        }
        b
    });
    // The best observed point itself (the candidate list ends with it).
    let always = vec![candidates.len() - 1];
    let search = Search {
        candidates,
        refine: REFINE,
        always,
        roulette: (0..REFINE).map(|_| rng.random::<f64>()).collect(),
        max_iters: 30,
        bounds,
    };
    let (unit, _) = maximize(&acq, &encoding, &search, &taken).ok_or("no candidate points")?;
    Ok(unit)
}

/// The exponent of the predicted cost that expected improvement is divided by, for trial
/// `trial_number` of a study of `max_trials`: `(max_trials − trial_number) / (max_trials −
/// initial)` clamped to [0, 1], from 1 at the first model-based trial to 0 at the last
/// (cost cooling, Lee et al. 2020, "Cost-aware Bayesian optimization"): plain EI per unit
/// cost keeps choosing cheap configurations once it has found them, cooling hands the end
/// of the budget back to the objective. 1 throughout when the budget is unknown.
pub fn cost_exponent(trial_number: u64, initial: u64, max_trials: Option<u64>) -> f64 {
    match max_trials {
        Some(max) if max > initial => {
            let left = max.saturating_sub(trial_number) as f64;
            (left / (max - initial) as f64).clamp(0.0, 1.0)
        }
        Some(_) => 0.0,
        None => 1.0,
    }
}

/// The cost model of [`BayesStrategy::cost_metric`]: a GP on the log of `metric` over every
/// trial that reported it positive and finite, standardized, with the exponent of
/// [`cost_exponent`] folded into its scale. `None` (plain EI) with fewer than two such trials,
/// when they all cost the same, when the exponent is 0, or when no GP can be fitted.
fn cost_model(
    ctx: &SuggestContext<'_>,
    points: &[Point],
    metric: &str,
    initial_trials: u64,
    encoding: &Encoding,
) -> Option<CostModel> {
    let exponent = cost_exponent(ctx.trial_number, initial_trials, ctx.max_trials);
    if exponent <= 0.0 {
        return None;
    }
    let cost_of = positive_metric(ctx, metric);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for p in points {
        if let Some(c) = cost_of.get(&p.number) {
            encoding.encode_into(&p.unit, &mut x);
            y.push(c.ln());
        }
    }
    if y.len() < 2 || y.iter().all(|v| (v - y[0]).abs() < 1e-12) {
        return None;
    }
    // Subset of data as for the objective, the cheapest half kept: no fit on 1000 points.
    let (gp, _, sd) = standardized_gp(&x, encoding.features(), &y, &y, &[], 0.0, FIT_ITERS)?;
    Some(CostModel {
        gp,
        scale: exponent * sd,
    })
}

/// The value of `key` each finished trial reported, by trial number, where it is finite and
/// positive (a measured spread, a cost).
fn positive_metric(ctx: &SuggestContext<'_>, key: &str) -> std::collections::BTreeMap<u64, f64> {
    ctx.history
        .iter()
        .filter_map(|o| {
            let v = *o.metrics.get(key)?;
            (v.is_finite() && v > 0.0).then_some((o.number, v))
        })
        .collect()
}

/// How much better than the incumbent a point must be to count as an improvement, in the
/// model's units: one standard deviation of the noise with one objective (the fitted noise
/// plus `incumbent_known`, the incumbent's known noise variance with measured noise; at the
/// noise floor, 1% of the standardized losses' spread), none with several (ParEGO).
///
/// Without it, EI never decays at the incumbent: the posterior there keeps a variance of about
/// the noise, so `σ·h(0) ≈ 0.4σ` of expected improvement stays for re-sampling the best point's
/// neighbourhood, and on small budgets `bayes` spent a dozen trials polishing one basin by
/// 1e-4 while other categorical choices went untried (`examples/synthetic.rs`, `linear-cat`:
/// 13 consecutive trials on one (loss, penalty) pair, each within 0.001 of the last). An
/// improvement smaller than the noise cannot be told from it. Measured in-process over 30
/// seeds (docs/STRATEGIES.md): linear-cat mean best 0.055 instead of 0.067, Rosenbrock-4 39
/// instead of 65, Ackley-5 3.1 instead of 3.7, Branin 0.4001 instead of 0.3985 (the one
/// loss). With several objectives ZDT1 and DTLZ2 lost (hypervolume 0.844 vs 0.847, 0.558 vs
/// 0.565), so the scalarized target keeps plain EI.
///
/// With measured noise the fitted noise falls to the floor (the known noise explains the
/// scatter), so the margin would vanish and EI would again re-sample the incumbent for gains
/// its own noise hides; the incumbent's known noise keeps it. On `examples/noisy_qat.rs` (300
/// seeds, the fastest format the noisiest; measured before the spread model was given its
/// known scatter, which moved these numbers by a few runs) the first-ranked trial was the truly best of the
/// trials run in 94 runs instead of 27 without the known part (54 with half of it), at a
/// true latency of 6.145 ms instead of 6.115 ms (6.121): re-sampling near a noisy incumbent
/// also averages its noise out, and the margin gives a little of that up.
fn improvement_margin(hyper: &Hyper, objectives: usize, incumbent_known: f64) -> f64 {
    if objectives == 1 {
        (hyper.noise() + incumbent_known.max(0.0)).sqrt()
    } else {
        0.0
    }
}

/// The objective's training data and fitted hyperparameters.
struct ObjectiveFit {
    /// One loss per point (scalarized when there are several objectives, bad points imputed).
    targets: Vec<f64>,
    /// The targets as the GP sees them: warped, standardized, worst at 0.
    y_all: Vec<f64>,
    /// Known noise variance per point (zero without measured spreads).
    known: Vec<f64>,
    /// The MAP hyperparameters.
    hyper: Hyper,
    /// Features (warped), targets and known noise of the conditioning subset.
    x_cond: Vec<f64>,
    y_cond: Vec<f64>,
    known_cond: Vec<f64>,
    /// The input warp of the objective's features ([`crate::input_warp`]).
    warp: InputWarp,
}

/// Builds the objective's training data from the points and fits the GP's hyperparameters.
fn fit_objective<R: Rng>(
    ctx: &SuggestContext<'_>,
    points: &[Point],
    encoding: &Encoding,
    (measured_noise, input_warp): (bool, bool),
    rng: &mut R,
) -> Result<ObjectiveFit, String> {
    let dim = encoding.features();
    // Objective targets (losses; scalarized when there are several), bad points imputed.
    let targets = objective_targets(points, ctx.objectives.len(), rng);
    let chosen = subset(&targets, MAX_CONDITION);
    let fit_set = subset(&targets, MAX_FIT);
    let feats = |idx: &[usize]| -> Vec<f64> {
        let mut out = Vec::with_capacity(idx.len() * dim);
        for &i in idx {
            encoding.encode_into(&points[i].unit, &mut out);
        }
        out
    };
    // Heteroscedastic: the spread each trial measured (`<metric>_spread`), smoothed; `None`
    // when the trials report none or it is not asked for.
    let spreads = if measured_noise {
        let mut modelled = vec![false; points.len()];
        for &i in chosen.iter().chain(&fit_set) {
            modelled[i] = true;
        }
        measured_spreads(ctx, points, &targets, &modelled, encoding)
    } else {
        None
    };
    // With measured noise the losses are only standardized: the output warp is fitted as if
    // the noise were the same everywhere, and where it is not its slope at the best (noisiest)
    // values turned their measured noise into most of the signal (examples/noisy_qat.rs: the
    // first-ranked trial 6.29 ms warped, 6.13 ms standardized).
    let (warp, warped) = warp_output(
        points,
        &targets,
        ctx.objectives.len() == 1 && spreads.is_none(),
    );
    // The noise variance of each trial in the model's units; all zero without spreads.
    let known = match &spreads {
        Some(s) => known_noise(s, &targets, &warp),
        None => vec![0.0; points.len()],
    };
    let y_all = pessimistic_prior(&warped);
    let pick = |idx: &[usize], v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let prior = Prior::default_for(dim);
    let (x_fit, y_fit, known_fit) = (
        feats(&fit_set),
        pick(&fit_set, &y_all),
        pick(&fit_set, &known),
    );
    // Input warping, one objective only: ParEGO's scalarization changes with every trial,
    // and on ZDT1 warping lost (docs/STRATEGIES.md).
    let warpable = encoding.warpable();
    let warping = input_warp
        && ctx.objectives.len() == 1
        && fit_set.len() >= InputWarp::MIN_POINTS
        && !warpable.is_empty();
    // With warping the fit's iterations are split: half before the warp is chosen, half
    // after it, from there, on the warped features (the length scales fitted to unwarped
    // features do not suit warped ones: choosing the warp without the refit lost on
    // Rosenbrock-4 and Ackley-5). A suggestion then costs about what it did without warping.
    let first = if warping { FIT_ITERS / 2 } else { FIT_ITERS };
    let hyper = fit_hyper(&x_fit, dim, &y_fit, &known_fit, &prior, first)
        .ok_or("the objective model could not be fitted (singular kernel matrix)")?;
    let (input_warp, hyper) = if warping {
        // The shapes are compared on a subset of the fit's points (the cost is quadratic
        // to cubic in them: 10 parameters, 50 points took 1.1 ms, over the latency budget).
        let sel = subset(&y_fit, WARP_POINTS);
        let x_sel: Vec<f64> = sel
            .iter()
            .flat_map(|&i| x_fit[i * dim..(i + 1) * dim].iter().copied())
            .collect();
        let input_warp = InputWarp::fit(
            &x_sel,
            dim,
            &pick(&sel, &y_fit),
            &pick(&sel, &known_fit),
            &hyper,
            &warpable,
        );
        let refit = fit_with_known_noise(
            &input_warp.apply(&x_fit),
            dim,
            &y_fit,
            &known_fit,
            &prior,
            std::slice::from_ref(&hyper),
            FIT_ITERS - first,
        );
        (input_warp, refit.map(|(h, _)| h).unwrap_or(hyper))
    } else {
        (InputWarp::identity(dim), hyper)
    };
    Ok(ObjectiveFit {
        x_cond: {
            let mut x = feats(&chosen);
            input_warp.apply_in_place(&mut x);
            x
        },
        warp: input_warp,
        y_cond: pick(&chosen, &y_all),
        known_cond: pick(&chosen, &known),
        targets,
        y_all,
        known,
        hyper,
    })
}

/// The finished feasible trials of a single-objective study ordered by the model's posterior
/// mean, best first: `(trial number, posterior mean in the model's units)`. With measured
/// noise (`<metric>_spread`) this is the denoised ranking: a noisy trial that got a lucky
/// measurement ranks by what the model believes of its configuration, not by the draw.
/// `None` when no model can be fitted (fewer than 2 trials with metrics, several objectives).
/// Pure and deterministic like a suggestion.
pub fn ranking(ctx: &SuggestContext<'_>, strategy: &BayesStrategy) -> Option<Vec<(u64, f64)>> {
    if ctx.objectives.len() != 1 {
        return None;
    }
    let points = history::points(ctx);
    let measured = points
        .iter()
        .filter(|p| matches!(p.evidence, Evidence::Measured { .. }))
        .count();
    if measured < 2 {
        return None;
    }
    let encoding = Encoding::new(ctx.space);
    let mut rng = ctx.rng(0xba7e5);
    let flags = (strategy.measured_noise, strategy.input_warp);
    let fit = fit_objective(ctx, &points, &encoding, flags, &mut rng).ok()?;
    let gp = Gp::with_known_noise(
        &fit.x_cond,
        encoding.features(),
        &fit.y_cond,
        &fit.hyper,
        &fit.known_cond,
        fit.y_cond.len(),
    )?;
    let mut out: Vec<(u64, f64)> = points
        .iter()
        .filter(|p| matches!(p.evidence, Evidence::Measured { feasible: true, .. }))
        .map(|p| {
            let x = fit.warp.apply(&encoding.encode(&p.unit));
            (p.number, gp.predict_mean(&x))
        })
        .collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    Some(out)
}

/// Hyperparameters by MAP from Optuna's starting point (every length scale, the signal and the
/// noise variance 1). Starting from little noise, or keeping the better of several starts,
/// was tried: it finds sharper, higher-likelihood fits that overfit, and the search did worse
/// (Hartmann-6: mean best −2.71 against −2.89 over 8 seeds at 40 trials).
fn fit_hyper(
    x: &[f64],
    dim: usize,
    y: &[f64],
    known: &[f64],
    prior: &Prior,
    iters: u64,
) -> Option<Hyper> {
    fit_with_known_noise(x, dim, y, known, prior, &[prior.start()], iters).map(|(h, _)| h)
}

/// A GP on the data plus the pending points observed, without noise, at the data-only
/// posterior mean (kriging believer): the mean stays, the variance at a pending point goes to
/// ~0, so the acquisition there does too.
fn believer(
    x: &[f64],
    dim: usize,
    y: &[f64],
    known: &[f64],
    x_pend: &[f64],
    hyper: &Hyper,
) -> Option<Gp> {
    let gp = Gp::with_known_noise(x, dim, y, hyper, known, y.len())?;
    if x_pend.is_empty() {
        return Some(gp);
    }
    let fantasies: Vec<f64> = gp.predict_means(x_pend);
    let mut xs = x.to_vec();
    xs.extend_from_slice(x_pend);
    let mut ys = y.to_vec();
    ys.extend(fantasies);
    Gp::with_known_noise(&xs, dim, &ys, hyper, known, y.len()).or(Some(gp))
}

/// The model of constraint `c`: a GP on every trial that reported its metric, standardized,
/// with the bounds in the same units. `None` when fewer than two trials reported it.
fn constraint_model(
    points: &[Point],
    c: usize,
    constraint: &crate::objective::Constraint,
    encoding: &Encoding,
    x_pend: &[f64],
) -> Option<ConstraintModel> {
    let dim = encoding.features();
    let mut x = Vec::new();
    let mut v = Vec::new();
    for p in points {
        if let Evidence::Measured { constraints, .. } = &p.evidence {
            if let Some(Some(value)) = constraints.get(c) {
                encoding.encode_into(&p.unit, &mut x);
                v.push(*value);
            }
        }
    }
    if v.len() < 2 {
        return None;
    }
    // Subset of data, as for the objective: the trials nearest the bound matter most.
    let bound = constraint
        .max
        .or(constraint.min)
        .unwrap_or_else(|| mean_sd(&v).0);
    let closeness: Vec<f64> = v.iter().map(|a| (a - bound).abs()).collect();
    let (gp, mean, sd) = standardized_gp(&x, dim, &v, &closeness, x_pend, 0.0, FIT_ITERS)?;
    Some(ConstraintModel {
        gp,
        min: constraint.min.map(|m| (m - mean) / sd),
        max: constraint.max.map(|m| (m - mean) / sd),
    })
}

/// A GP on the standardized values `v` at features `x` (`dim` per row), with the pending
/// points `x_pend` as kriging-believer fantasies, and the mean and standard deviation it was
/// standardized by; `known_var` is a noise variance every value is known to have (in the
/// units of `v`; 0 for none), on top of the fitted one; `iters` L-BFGS iterations fit it. Subset of data as for the objective: hyperparameters fitted on the
/// [`MAX_FIT`] rows and the posterior conditioned on the [`MAX_CONDITION`] rows that
/// [`subset`] keeps by `key` (smallest first). `None` when no GP can be built.
fn standardized_gp(
    x: &[f64],
    dim: usize,
    v: &[f64],
    key: &[f64],
    x_pend: &[f64],
    known_var: f64,
    iters: u64,
) -> Option<(Gp, f64, f64)> {
    let (mean, sd) = mean_sd(v);
    let y: Vec<f64> = v.iter().map(|a| (a - mean) / sd).collect();
    let known = known_var / (sd * sd);
    let rows = |idx: &[usize]| -> (Vec<f64>, Vec<f64>) {
        let mut xs = Vec::with_capacity(idx.len() * dim);
        for &i in idx {
            xs.extend_from_slice(&x[i * dim..(i + 1) * dim]);
        }
        (xs, idx.iter().map(|&i| y[i]).collect())
    };
    let fit_rows = subset(key, MAX_FIT);
    let (xf, yf) = rows(&fit_rows);
    let kf = vec![known; fit_rows.len()];
    let hyper = fit_hyper(&xf, dim, &yf, &kf, &Prior::default_for(dim), iters)?;
    let cond_rows = subset(key, MAX_CONDITION);
    let (xc, yc) = rows(&cond_rows);
    let kc = vec![known; cond_rows.len()];
    let gp = believer(&xc, dim, &yc, &kc, x_pend, &hyper)?;
    Some((gp, mean, sd))
}

/// One loss per point: the objective loss, or (several objectives) ParEGO's augmented
/// Chebyshev scalarization of the losses normalized to [0, 1], with weights drawn uniformly
/// from the simplex for this trial. Bad points get the worst value seen.
fn objective_targets<R: Rng>(points: &[Point], objectives: usize, rng: &mut R) -> Vec<f64> {
    let losses: Vec<Option<&Vec<f64>>> = points
        .iter()
        .map(|p| match &p.evidence {
            Evidence::Measured { losses, .. } => Some(losses),
            Evidence::Bad => None,
        })
        .collect();
    let raw: Vec<Option<f64>> = if objectives == 1 {
        losses.iter().map(|l| l.map(|l| l[0])).collect()
    } else {
        let mut lo = vec![f64::INFINITY; objectives];
        let mut hi = vec![f64::NEG_INFINITY; objectives];
        for l in losses.iter().flatten() {
            for k in 0..objectives {
                lo[k] = lo[k].min(l[k]);
                hi[k] = hi[k].max(l[k]);
            }
        }
        let weights: Vec<f64> = {
            let w: Vec<f64> = (0..objectives)
                .map(|_| {
                    let e: f64 = Exp1.sample(rng);
                    e + 1e-12
                })
                .collect::<Vec<f64>>();
            let s: f64 = w.iter().sum();
            w.iter().map(|v| v / s).collect()
        };
        losses
            .iter()
            .map(|l| {
                l.map(|l| {
                    let mut max = f64::NEG_INFINITY;
                    let mut sum = 0.0;
                    for k in 0..objectives {
                        let span = hi[k] - lo[k];
                        let f = if span > 0.0 {
                            (l[k] - lo[k]) / span
                        } else {
                            0.0
                        };
                        max = max.max(weights[k] * f);
                        sum += weights[k] * f;
                    }
                    max + PAREGO_RHO * sum
                })
            })
            .collect()
    };
    let worst = raw
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    raw.iter().map(|v| v.unwrap_or(worst)).collect()
}

/// The targets standardized through an output warp ([`OutputWarp`], Yeo-Johnson) fitted on the
/// measured trials' targets (the imputed values of failed trials would pile up at the worst
/// one and pull the fit); the identity when it cannot be fitted.
///
/// Several objectives (ParEGO's scalarization, already normalized to [0, 1] per objective) are
/// only standardized: warped, ZDT1 and DTLZ2 lost a little (hypervolume 0.844 vs 0.847 and
/// 0.570 vs 0.575, 10 seeds).
fn warp_output(points: &[Point], targets: &[f64], warp: bool) -> (OutputWarp, Vec<f64>) {
    let measured: Vec<f64> = points
        .iter()
        .zip(targets)
        .filter(|(p, _)| matches!(p.evidence, Evidence::Measured { .. }))
        .map(|(_, t)| *t)
        .collect();
    let warp = if warp {
        OutputWarp::fit(&measured)
    } else {
        OutputWarp::standardizing(targets)
    };
    let warped = targets.iter().map(|t| warp.apply(*t)).collect();
    (warp, warped)
}

/// The standard deviation of the log of the range of k normal draws, whatever their σ: 0.37 for
/// k = 5, 0.26 for k = 10 (the range's coefficient of variation); the QAT workload times 5.
const LOG_RANGE_SD: f64 = 0.35;
/// L-BFGS iterations of the spread model's fit (a smoother of a nuisance, not the objective).
const SPREAD_FIT_ITERS: u64 = 12;

/// The measured spread of each point's objective (`<objective>_spread`: the range of a
/// trial's timed repeats, as the QAT workload reports it; see `SPREAD_SUFFIX` in the daemon's
/// leaderboard), smoothed by a GP on the log spreads of every trial that reported one: the
/// spread of one trial is itself a noisy estimate (the range of 5 normal draws varies by ±40%
/// from trial to trial), and a trial with a lucky small range would otherwise be trusted far
/// beyond the others measured with the same kernel. Each log spread is known to scatter by
/// [`LOG_RANGE_SD`]. 0 for points without a spread (failed
/// trials, trials that reported none); `None` with several objectives (their scalarized
/// target has no measured noise) or when no trial reported a spread. With one spread, or when
/// the GP cannot be fitted, the raw spreads. The GP predicts the mean log spread, about 7%
/// below the mean spread for 5 repeats; that is left as it is. Its subset of data is the
/// objective's (kept by `targets`, best first), and only the points marked in `modelled`
/// (those the objective's GP is fitted or conditioned on) get a smoothed spread, the others
/// their raw one: predicting at all of a 1000-trial study's points cost ~20 ms.
fn measured_spreads(
    ctx: &SuggestContext<'_>,
    points: &[Point],
    targets: &[f64],
    modelled: &[bool],
    encoding: &Encoding,
) -> Option<Vec<f64>> {
    let [objective] = ctx.objectives else {
        return None;
    };
    let spread_of = positive_metric(ctx, &format!("{}{SPREAD_SUFFIX}", objective.metric));
    let with: Vec<(usize, f64)> = points
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.evidence, Evidence::Measured { .. }))
        .filter_map(|(i, p)| Some((i, *spread_of.get(&p.number)?)))
        .collect();
    if with.is_empty() {
        return None;
    }
    let mut out = vec![0.0; points.len()];
    let dim = encoding.features();
    let mut x = Vec::with_capacity(with.len() * dim);
    for (i, _) in &with {
        encoding.encode_into(&points[*i].unit, &mut x);
    }
    let logs: Vec<f64> = with.iter().map(|(_, s)| s.ln()).collect();
    let key: Vec<f64> = with.iter().map(|(i, _)| targets[*i]).collect();
    let model = (with.len() >= 2)
        .then(|| {
            let var = LOG_RANGE_SD * LOG_RANGE_SD;
            standardized_gp(&x, dim, &logs, &key, &[], var, SPREAD_FIT_ITERS)
        })
        .flatten();
    for (k, (i, raw)) in with.iter().enumerate() {
        out[*i] = match &model {
            Some((gp, mean, sd)) if modelled[*i] => {
                let smooth = (mean + sd * gp.predict_mean(&x[k * dim..(k + 1) * dim])).exp();
                if smooth.is_finite() && smooth > 0.0 {
                    smooth
                } else {
                    *raw
                }
            }
            _ => *raw,
        };
    }
    Some(out)
}

/// The noise variance of each point in the model's (standardized) units, from its measured
/// spread ([`measured_spreads`]). The metric is the median of k ≥ 5 repeats and the spread
/// their range: the range of 5 normal draws is about 2.3 of their standard deviations σ, the
/// median's standard deviation about 1.25 σ / √5 = 0.56 σ, so the metric's own noise is taken
/// as a quarter of the spread, mapped through the output transform's slope at the point's
/// value. Zero where the spread is.
fn known_noise(spreads: &[f64], targets: &[f64], warp: &OutputWarp) -> Vec<f64> {
    spreads
        .iter()
        .zip(targets)
        .map(|(s, t)| {
            let sd = 0.25 * s * warp.slope(*t);
            if sd.is_finite() {
                sd * sd
            } else {
                0.0
            }
        })
        .collect()
}

/// The suffix a trial's metric carries for its measured run-to-run spread (the daemon's
/// `leaderboard::SPREAD_SUFFIX`): `latency_ms` → `latency_ms_spread`.
pub const SPREAD_SUFFIX: &str = "_spread";

/// Shifts standardized losses so that the worst one is 0, the GP's prior mean: far from the
/// data the model expects a trial as bad as the worst seen, not an average one.
///
/// The trials are not a random sample of the space: after the first few, the model puts them
/// where it expects low losses, so their mean is better than the average over the space, and a
/// prior mean at that mean makes every unexplored region (in several dimensions, every corner
/// of the cube) look promising on variance alone. With the prior at the worst loss, EI is drawn
/// to a region by a model that predicts low losses there, and to the unknown only as far as its
/// variance justifies. Measured in-process (`strategies/examples/synthetic.rs`, 30 seeds, 40
/// trials): Hartmann-6 mean best −3.19 instead of −2.92, Ackley-5 5.9 instead of 8.4,
/// Rosenbrock-4 237 instead of 404, no Branin run stuck at a boundary (worst 0.416 instead of
/// 1.94); DTLZ2 hypervolume 0.565 instead of 0.525 (10 seeds, 100 trials).
fn pessimistic_prior(y: &[f64]) -> Vec<f64> {
    let worst = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !worst.is_finite() {
        return y.to_vec();
    }
    y.iter().map(|v| v - worst).collect()
}

/// Indices of at most `cap` points: all of them if few enough, else the best half by `values`
/// (smallest) and an even spread of the rest, in index order.
fn subset(values: &[f64], cap: usize) -> Vec<usize> {
    let n = values.len();
    if n <= cap {
        return (0..n).collect();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]).then(a.cmp(b)));
    let best = cap / 2;
    let mut keep: Vec<usize> = order[..best].to_vec();
    let mut rest: Vec<usize> = order[best..].to_vec();
    rest.sort_unstable();
    let need = cap - best;
    for k in 0..need {
        keep.push(rest[k * rest.len() / need]);
    }
    keep.sort_unstable();
    keep
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

/// The trust region's box for this suggestion, when it is in force: centred on the best
/// feasible observed point (`None` while there is none), its sides those of the region
/// replayed from the finished trials ([`TrustRegion::replay`]) weighted by the fitted length
/// scales. `None` before the later phase: the first half of the model's trials when the
/// study has `max_trials`, else its
/// first [`REGION_AFTER`] trials.
fn region_box(
    ctx: &SuggestContext<'_>,
    points: &[Point],
    targets: &[f64],
    initial: u64,
    encoding: &Encoding,
    hyper: &crate::gp::Hyper,
) -> Option<RegionBox> {
    let start = match ctx.max_trials {
        Some(max) => initial + max.saturating_sub(initial) / 2,
        None => initial + REGION_AFTER,
    };
    if ctx.trial_number < start {
        return None;
    }
    // A trial's value when it is feasible: an infeasible trial is a failure, and never the
    // centre, however low its loss.
    let values: Vec<Option<f64>> = points
        .iter()
        .zip(targets)
        .map(|(p, t)| matches!(p.evidence, Evidence::Measured { feasible: true, .. }).then_some(*t))
        .collect();
    let fail_after = ctx.space.dim().max(4) as u32;
    let region = TrustRegion::replay(&values, initial as usize, fail_after);
    let inv_ls2 = hyper.inv_sq_lengthscales();
    let scales: Vec<Option<f64>> = encoding
        .ordered_features()
        .iter()
        .map(|f| f.map(|f| 1.0 / inv_ls2[f].sqrt()))
        .collect();
    let best = (0..points.len())
        .filter_map(|i| Some((i, values[i]?)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))?
        .0;
    Some(region.around(points[best].unit.clone(), &scales))
}

/// Trials of a study without `max_trials` before the trust region is in force.
const REGION_AFTER: u64 = 40;

/// Candidate starting points: a fresh Sobol scramble for this trial, and Gaussian
/// perturbations of the best observed points (discrete coordinates resampled now and then);
/// with a trust region, the scramble is drawn in its box and the perturbations are clamped
/// to it.
fn candidates<R: Rng>(
    ctx: &SuggestContext<'_>,
    points: &[Point],
    targets: &[f64],
    region: Option<&RegionBox>,
    rng: &mut R,
) -> Vec<Vec<f64>> {
    let d = ctx.space.dim();
    let key = mix(ctx.seed ^ mix(ctx.trial_number ^ 0x6361_6e64));
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|a, b| targets[*a].total_cmp(&targets[*b]).then(a.cmp(b)));
    let mut out: Vec<Vec<f64>> = (0..SWEEP)
        .map(|i| {
            let u = SobolStrategy::unit_point(key, i, d);
            match region {
                Some(r) => r.sample(&u, rng),
                None => u,
            }
        })
        .collect();
    let discrete: Vec<bool> = ctx
        .space
        .params()
        .iter()
        .map(|p| p.domain.cardinality().is_some())
        .collect();
    for &i in order.iter().take(LOCAL_CENTRES) {
        let centre = &points[i].unit;
        for k in 0..LOCAL {
            let scale = [0.01, 0.05, 0.15][k % 3];
            let mut v: Vec<f64> = centre
                .iter()
                .zip(&discrete)
                .map(|(u, disc)| {
                    if *disc {
                        if rng.random::<f64>() < 1.0 / d as f64 {
                            rng.random::<f64>()
                        } else {
                            *u
                        }
                    } else {
                        let z: f64 = StandardNormal.sample(rng);
                        (u + scale * z).clamp(0.0, 1.0)
                    }
                })
                .collect();
            if let Some(r) = region {
                r.clamp(&mut v);
            }
            out.push(v);
        }
    }
    // Last: the best observed point.
    if let Some(&i) = order.first() {
        out.push(points[i].unit.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::{Constraint, Direction, Objective};
    use crate::space::{Domain, Param, ParamValue, SearchSpace};
    use crate::strategy::{Observation, Outcome};
    use crate::test_support::arb_space;
    use proptest::prelude::{any, prop_assert, proptest, ProptestConfig};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn float(name: &str, low: f64, high: f64) -> Param {
        Param::new(
            name,
            Domain::Float {
                low,
                high,
                log: false,
            },
        )
    }

    fn value(p: &Params, k: &str) -> f64 {
        match p[k] {
            ParamValue::Float(x) => x,
            ParamValue::Int(i) => i as f64,
            _ => panic!(),
        }
    }

    fn minimize(metric: &str) -> Objective {
        Objective {
            metric: metric.into(),
            direction: Direction::Minimize,
        }
    }

    /// Runs a sequential study of `n` trials on `f` and returns the history.
    fn run(
        strategy: &dyn Strategy,
        space: &SearchSpace,
        objectives: &[Objective],
        constraints: &[Constraint],
        n: u64,
        f: impl Fn(&Params) -> BTreeMap<String, f64>,
    ) -> Vec<Observation> {
        run_seeded(strategy, space, objectives, constraints, n, 11, f)
    }

    /// [`run`] with the study's seed.
    fn run_seeded(
        strategy: &dyn Strategy,
        space: &SearchSpace,
        objectives: &[Objective],
        constraints: &[Constraint],
        n: u64,
        seed: u64,
        f: impl Fn(&Params) -> BTreeMap<String, f64>,
    ) -> Vec<Observation> {
        let mut history = Vec::new();
        for t in 0..n {
            let mut ctx = SuggestContext::new(space, t, seed);
            ctx.objectives = objectives;
            ctx.constraints = constraints;
            ctx.history = &history;
            let s = strategy.suggest_with_note(&ctx).unwrap();
            assert!(space.contains(&s.params));
            if t >= 8 {
                assert_eq!(s.note, None, "trial {t}");
            }
            let metrics = f(&s.params);
            let feasible = constraints.iter().all(|c| c.satisfied_by(&metrics));
            history.push(Observation {
                number: t,
                params: Arc::new(s.params),
                outcome: if feasible {
                    Outcome::Complete
                } else {
                    Outcome::Infeasible
                },
                metrics: Arc::new(metrics),
            });
        }
        history
    }

    #[test]
    fn the_trust_region_holds_the_sweep_near_the_best_trial_in_the_later_trials() {
        let space = SearchSpace::new(vec![float("x", -5.0, 5.0), float("y", -5.0, 5.0)]).unwrap();
        let obj = [minimize("loss")];
        let quadratic = |p: &Params| -> BTreeMap<String, f64> {
            let (x, y) = (value(p, "x"), value(p, "y"));
            [("loss".to_string(), (x - 1.0).powi(2) + (y + 2.0).powi(2))].into()
        };
        let plain = BayesStrategy {
            trust_region: false,
            ..BayesStrategy::default()
        };
        let history = run(&plain, &space, &obj, &[], 20, quadratic);
        let with_region = BayesStrategy::default();
        let mut ctx = SuggestContext::new(&space, 20, 7);
        ctx.objectives = &obj;
        ctx.history = &history;
        // 100 trials: the region starts at trial 8 + 92 / 2 = 54, so trial 20 is as before.
        ctx.max_trials = Some(100);
        assert_eq!(
            with_region.suggest(&ctx).unwrap(),
            plain.suggest(&ctx).unwrap()
        );
        let points = history::points(&ctx);
        let targets = objective_targets(&points, 1, &mut ctx.rng(0));
        let encoding = Encoding::new(&space);
        let hyper = Prior::default_for(2).start();
        assert_eq!(
            region_box(&ctx, &points, &targets, 8, &encoding, &hyper),
            None
        );
        // 30 trials: it starts at 8 + 11 = 19. Equal length scales: a square box.
        ctx.max_trials = Some(30);
        let region = region_box(&ctx, &points, &targets, 8, &encoding, &hyper).unwrap();
        let half = &region.half;
        assert!(half[0].unwrap() > 0.0 && (half[0].unwrap() - half[1].unwrap()).abs() < 1e-12);
        assert_ne!(
            with_region.suggest(&ctx).unwrap(),
            plain.suggest(&ctx).unwrap()
        );
        let best = (0..points.len())
            .min_by(|a, b| targets[*a].total_cmp(&targets[*b]))
            .unwrap();
        assert_eq!(region.centre, points[best].unit);
        // Every candidate, and the suggestion itself, lies in the box.
        let cands = candidates(&ctx, &points, &targets, Some(&region), &mut ctx.rng(1));
        let suggested = space.to_unit(&with_region.suggest(&ctx).unwrap()).unwrap();
        for c in cands.iter().chain([&suggested]) {
            for (k, h) in half.iter().enumerate() {
                assert!(
                    (c[k] - region.centre[k]).abs() <= h.unwrap() + 1e-9,
                    "{c:?}"
                );
            }
        }
    }

    #[test]
    fn finds_the_minimum_of_a_quadratic() {
        let space = SearchSpace::new(vec![float("x", -5.0, 5.0), float("y", -5.0, 5.0)]).unwrap();
        let obj = [minimize("loss")];
        let s = BayesStrategy {
            initial_trials: 6,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&s, &space, &obj, &[], 25, |p| {
            let (x, y) = (value(p, "x"), value(p, "y"));
            [("loss".to_string(), (x - 1.0).powi(2) + (y + 2.0).powi(2))].into()
        });
        let best = h
            .iter()
            .map(|o| o.metrics["loss"])
            .fold(f64::INFINITY, f64::min);
        assert!(best < 0.05, "best {best}");
    }

    #[test]
    fn respects_a_constraint() {
        // Minimize x + y on [0, 1]² subject to x² + y² ≥ 1: the feasible optimum is x + y = 1,
        // at the corners (1, 0) and (0, 1), on the constraint's boundary.
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0), float("y", 0.0, 1.0)]).unwrap();
        let obj = [minimize("sum")];
        let cons = [Constraint {
            metric: "r2".into(),
            min: Some(1.0),
            max: None,
        }];
        let s = BayesStrategy {
            initial_trials: 6,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&s, &space, &obj, &cons, 25, |p| {
            let (x, y) = (value(p, "x"), value(p, "y"));
            [
                ("sum".to_string(), x + y),
                ("r2".to_string(), x * x + y * y),
            ]
            .into()
        });
        let feasible: Vec<f64> = h
            .iter()
            .filter(|o| o.outcome == Outcome::Complete)
            .map(|o| o.metrics["sum"])
            .collect();
        let best = feasible.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(best < 1.05, "best feasible {best}");
        // The model hugs the boundary from both sides (the optimum is on it), so many of its
        // points land just outside; some must land inside.
        let late = h[6..]
            .iter()
            .filter(|o| o.outcome == Outcome::Complete)
            .count();
        assert!(late >= 2, "{late} feasible of 19");
    }

    #[test]
    fn pending_trials_are_not_repeated() {
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0), float("y", 0.0, 1.0)]).unwrap();
        let obj = [minimize("loss")];
        let s = BayesStrategy {
            initial_trials: 4,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&s, &space, &obj, &[], 10, |p| {
            let (x, y) = (value(p, "x"), value(p, "y"));
            [("loss".to_string(), (x - 0.3).powi(2) + (y - 0.6).powi(2))].into()
        });
        let dist = |p: &Params, q: &Params| {
            (value(p, "x") - value(q, "x")).hypot(value(p, "y") - value(q, "y"))
        };
        let mut pending: Vec<Params> = Vec::new();
        let mut spread: f64 = 0.0;
        for k in 0..4 {
            let mut ctx = SuggestContext::new(&space, 10 + k, 11);
            ctx.objectives = &obj;
            ctx.history = &h;
            ctx.pending = &pending;
            let p = s.suggest(&ctx).unwrap();
            for q in &pending {
                let d = dist(&p, q);
                assert!(d > 1e-4, "suggestion {k} repeats a pending point ({d})");
                spread = spread.max(d);
            }
            pending.push(p);
        }
        // Near the optimum, but not collapsed onto one point.
        assert!(spread > 0.02, "{spread}");
    }

    #[test]
    fn eight_pending_suggestions_are_distinct_and_spread() {
        // A batch of 8 asked before any is told (Bayesmark's batches, `budget.parallel = 8`),
        // on a mixed space: every suggestion differs from the others and from the history, and
        // the batch is not one point with jitter.
        let space = SearchSpace::new(vec![
            float("x", 0.0, 1.0),
            float("y", 0.0, 1.0),
            Param::new(
                "kind",
                Domain::Categorical {
                    choices: ["a", "b", "c"]
                        .iter()
                        .map(|s| ParamValue::Str(s.to_string()))
                        .collect(),
                },
            ),
            Param::new(
                "n",
                Domain::Int {
                    low: 1,
                    high: 8,
                    step: 1,
                    log: false,
                },
            ),
        ])
        .unwrap();
        let obj = [minimize("loss")];
        let s = BayesStrategy {
            initial_trials: 6,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&s, &space, &obj, &[], 16, |p| {
            let shift = match &p["kind"] {
                ParamValue::Str(k) if k == "b" => 0.0,
                _ => 0.4,
            };
            let v = (value(p, "x") - 0.3).powi(2)
                + (value(p, "y") - 0.7).powi(2)
                + 0.01 * (value(p, "n") - 5.0).powi(2)
                + shift;
            [("loss".to_string(), v)].into()
        });
        let unit = |p: &Params| space.to_unit(p).unwrap();
        let mut pending: Vec<Params> = Vec::new();
        for k in 0..8 {
            let mut ctx = SuggestContext::new(&space, 16 + k, 11);
            ctx.objectives = &obj;
            ctx.history = &h;
            ctx.pending = &pending;
            let p = s.suggest_with_note(&ctx).unwrap();
            assert_eq!(p.note, None, "suggestion {k} fell back");
            pending.push(p.params);
        }
        let points: Vec<Vec<f64>> = pending.iter().map(unit).collect();
        let dist = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let mut closest = f64::INFINITY;
        let mut widest: f64 = 0.0;
        for (i, a) in points.iter().enumerate() {
            for b in &points[..i] {
                closest = closest.min(dist(a, b));
                widest = widest.max(dist(a, b));
            }
            for o in &h {
                assert!(
                    dist(a, &unit(&o.params)) > 1e-6,
                    "{i} repeats a finished trial"
                );
            }
        }
        assert!(
            closest > 1e-3,
            "two of the batch nearly coincide ({closest})"
        );
        assert!(
            widest > 0.1,
            "the batch is one point with jitter ({widest})"
        );
    }

    #[test]
    fn deterministic_and_order_independent() {
        let space = SearchSpace::new(vec![
            float("x", 0.0, 1.0),
            Param::new(
                "q",
                Domain::Categorical {
                    choices: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())],
                },
            ),
            Param::new(
                "n",
                Domain::Int {
                    low: 1,
                    high: 64,
                    step: 1,
                    log: true,
                },
            ),
        ])
        .unwrap();
        let obj = [minimize("loss")];
        let s = BayesStrategy {
            initial_trials: 5,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        // 16 trials: past `InputWarp::MIN_POINTS`, so the input warp's choice is covered too.
        let mut h = run(&s, &space, &obj, &[], 16, |p| {
            let q = if p["q"] == ParamValue::Str("a".into()) {
                0.0
            } else {
                0.5
            };
            [(
                "loss".to_string(),
                (value(p, "x") - 0.2).powi(2) + q + value(p, "n").ln() * 0.01,
            )]
            .into()
        });
        let mut ctx = SuggestContext::new(&space, 16, 11);
        ctx.objectives = &obj;
        ctx.history = &h;
        let a = s.suggest(&ctx).unwrap();
        assert_eq!(a, s.suggest(&ctx).unwrap());
        h.reverse();
        let mut ctx = SuggestContext::new(&space, 16, 11);
        ctx.objectives = &obj;
        ctx.history = &h;
        assert_eq!(a, s.suggest(&ctx).unwrap());
    }

    #[test]
    fn falls_back_with_a_reason() {
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0)]).unwrap();
        let obj = [minimize("loss")];
        let s = BayesStrategy {
            initial_trials: 0,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let failed = vec![Observation {
            number: 0,
            params: Arc::new([("x".to_string(), ParamValue::Float(0.5))].into()),
            outcome: Outcome::Failed,
            metrics: Arc::new(BTreeMap::new()),
        }];
        let mut ctx = SuggestContext::new(&space, 1, 3);
        ctx.objectives = &obj;
        ctx.history = &failed;
        let sug = s.suggest_with_note(&ctx).unwrap();
        assert!(space.contains(&sug.params));
        let note = sug.note.unwrap();
        assert!(note.contains("0 finished trial(s) with metrics"), "{note}");
        // The fallback is the study's Sobol point for that trial.
        assert_eq!(
            sug.params,
            SobolStrategy
                .suggest(&SuggestContext::new(&space, 1, 3))
                .unwrap()
        );
        // Non-finite metrics are not data either.
        let odd: Vec<Observation> = (0..3)
            .map(|i| Observation {
                number: i,
                params: Arc::new([("x".to_string(), ParamValue::Float(i as f64 / 3.0))].into()),
                outcome: Outcome::Complete,
                metrics: Arc::new([("loss".to_string(), f64::NAN)].into()),
            })
            .collect();
        ctx.history = &odd;
        assert!(s.suggest_with_note(&ctx).unwrap().note.is_some());
    }

    #[test]
    fn multi_objective_spreads_along_the_front() {
        // Two conflicting objectives: x² and (x - 1)² on [0, 1]² (y irrelevant). Every x in
        // [0, 1] is Pareto-optimal; suggestions should not all sit at one end.
        let space = SearchSpace::new(vec![float("x", -1.0, 2.0), float("y", 0.0, 1.0)]).unwrap();
        let obj = [minimize("a"), minimize("b")];
        let s = BayesStrategy {
            initial_trials: 6,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&s, &space, &obj, &[], 24, |p| {
            let x = value(p, "x");
            [
                ("a".to_string(), x * x),
                ("b".to_string(), (x - 1.0).powi(2)),
            ]
            .into()
        });
        let xs: Vec<f64> = h[6..].iter().map(|o| value(&o.params, "x")).collect();
        let inside = xs.iter().filter(|x| (-0.1..=1.1).contains(*x)).count();
        assert!(inside >= 12, "{xs:?}");
        let spread = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - xs.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(spread > 0.5, "{xs:?}");
    }

    #[test]
    fn measured_noise_discounts_a_lucky_noisy_trial() {
        // f(x) = (x − 0.5)² on a grid of 12 trials, each with a tiny spread, plus one trial at
        // x = 0.95 (true 0.2025) whose single lucky measurement says −0.05 with a spread of 2.
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0)]).unwrap();
        let obj = [minimize("lat")];
        let mut history: Vec<Observation> = (0..12)
            .map(|i| {
                let x = i as f64 / 11.0;
                Observation {
                    number: i,
                    params: Arc::new([("x".to_string(), ParamValue::Float(x))].into()),
                    outcome: Outcome::Complete,
                    metrics: Arc::new(
                        [
                            ("lat".to_string(), (x - 0.5).powi(2)),
                            ("lat_spread".to_string(), 0.001),
                        ]
                        .into(),
                    ),
                }
            })
            .collect();
        history.push(Observation {
            number: 12,
            params: Arc::new([("x".to_string(), ParamValue::Float(0.95))].into()),
            outcome: Outcome::Complete,
            metrics: Arc::new([("lat".to_string(), -0.05), ("lat_spread".to_string(), 2.0)].into()),
        });
        let mut ctx = SuggestContext::new(&space, 13, 5);
        ctx.objectives = &obj;
        ctx.history = &history;
        let position = |r: &[(u64, f64)]| r.iter().position(|(n, _)| *n == 12).unwrap();
        let strategy = |measured_noise| BayesStrategy {
            initial_trials: 8,
            measured_noise,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let plain = ranking(&ctx, &strategy(false)).unwrap();
        let noisy = ranking(&ctx, &strategy(true)).unwrap();
        assert_eq!(plain.len(), 13);
        // By the truth it is 11th (index 10): after the 10 trials within 0.41 of 0.5. The
        // constant-noise model smooths it to index 8; told its noise, the model puts it where
        // its neighbours say it is.
        assert!(position(&noisy) >= 9, "{noisy:?}");
        assert!(position(&noisy) > position(&plain), "{plain:?} {noisy:?}");
        // the best by the model is a trial next to 0.5 (x = 5/11 or 6/11)
        assert!([5, 6].contains(&noisy[0].0), "{noisy:?}");
        // and the suggestion with measured noise is a valid, deterministic point
        let s = BayesStrategy {
            initial_trials: 4,
            measured_noise: true,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let a = s.suggest_with_note(&ctx).unwrap();
        assert_eq!(a.note, None);
        assert!(space.contains(&a.params));
        assert_eq!(a, s.suggest_with_note(&ctx).unwrap());
    }

    /// Trials of `lat = (x − 0.5)²` at 12 grid points of `x`, with the given spreads.
    fn spread_history(spreads: &[Option<f64>]) -> Vec<Observation> {
        spreads
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let x = i as f64 / (spreads.len() - 1) as f64;
                let mut m: std::collections::BTreeMap<String, f64> =
                    [("lat".to_string(), (x - 0.5).powi(2))].into();
                if let Some(s) = s {
                    m.insert("lat_spread".to_string(), *s);
                }
                Observation {
                    number: i as u64,
                    params: Arc::new([("x".to_string(), ParamValue::Float(x))].into()),
                    outcome: Outcome::Complete,
                    metrics: Arc::new(m),
                }
            })
            .collect()
    }

    #[test]
    fn measured_spreads_pool_the_trials_of_one_noise_level() {
        // Eleven trials whose spreads scatter by ±30% around 1 (one noise level), and one
        // whose 5 repeats happened to agree (0.1): smoothed, it is pulled well towards the
        // others (a log spread is known to scatter by LOG_RANGE_SD; a one-trial dip of 2.3 in
        // the log is partly believed, partly noise).
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0)]).unwrap();
        let obj = [minimize("lat")];
        let raw = [1.2, 0.8, 1.1, 0.9, 1.3, 0.1, 0.7, 1.0, 1.2, 0.9, 0.8, 1.1];
        let history = spread_history(&raw.map(Some));
        let mut ctx = SuggestContext::new(&space, 12, 3);
        ctx.objectives = &obj;
        ctx.history = &history;
        let points = history::points(&ctx);
        let encoding = Encoding::new(&space);
        let s = measured_spreads(&ctx, &points, &[0.0; 12], &[true; 12], &encoding).unwrap();
        assert_eq!(s.len(), 12);
        assert!(s[5] > 0.3, "{s:?}");
        // Each smoothed value lies within the raw ones' range (a geometric mean, not a sum).
        assert!(s.iter().all(|v| (0.1..=1.3).contains(v)), "{s:?}");
        // A trial without a spread has none; no spread at all, or two objectives: None.
        let mut some = raw.map(Some);
        some[3] = None;
        let history = spread_history(&some);
        ctx.history = &history;
        let points = history::points(&ctx);
        assert_eq!(
            measured_spreads(&ctx, &points, &[0.0; 12], &[true; 12], &encoding).unwrap()[3],
            0.0
        );
        let history = spread_history(&[None; 12]);
        ctx.history = &history;
        let points = history::points(&ctx);
        assert_eq!(
            measured_spreads(&ctx, &points, &[0.0; 12], &[true; 12], &encoding),
            None
        );
        let two = [minimize("lat"), minimize("lat_spread")];
        ctx.objectives = &two;
        assert_eq!(
            measured_spreads(&ctx, &points, &[0.0; 12], &[true; 12], &encoding),
            None
        );
        // The known noise is a quarter of the spread, squared, in standardized units.
        let warp = OutputWarp::standardizing(&[0.0, 2.0]);
        let k = known_noise(&[0.4, 0.0], &[0.0, 2.0], &warp);
        assert!(
            (k[0] - (0.1 * warp.slope(0.0)).powi(2)).abs() < 1e-12,
            "{k:?}"
        );
        assert_eq!(k[1], 0.0);
    }

    #[test]
    fn measured_noise_changes_nothing_without_spreads() {
        // On by default: a study whose trials report no spread suggests what it did without it.
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0), float("y", -1.0, 1.0)]).unwrap();
        let obj = [minimize("lat")];
        let history: Vec<Observation> = (0..10u64)
            .map(|t| {
                let p = SobolStrategy
                    .suggest(&SuggestContext::new(&space, t, 9))
                    .unwrap();
                let u = space.to_unit(&p).unwrap();
                let lat = (u[0] - 0.3).powi(2) + (u[1] - 0.6).abs();
                Observation {
                    number: t,
                    params: Arc::new(p),
                    outcome: Outcome::Complete,
                    metrics: Arc::new([("lat".to_string(), lat)].into()),
                }
            })
            .collect();
        let mut ctx = SuggestContext::new(&space, 10, 9);
        ctx.objectives = &obj;
        ctx.history = &history;
        let on = BayesStrategy::default();
        assert!(on.measured_noise);
        let off = BayesStrategy {
            measured_noise: false,
            ..BayesStrategy::default()
        };
        assert_eq!(
            on.suggest_with_note(&ctx).unwrap(),
            off.suggest_with_note(&ctx).unwrap()
        );
        assert_eq!(ranking(&ctx, &on), ranking(&ctx, &off));
    }

    #[test]
    fn does_not_polish_one_basin_while_choices_go_untried() {
        // Two categoricals (a "solver" and a "penalty") whose best pair matters, two log
        // floats, and a plateau where too much regularization underfits: the shape of issue
        // 15's linear-model problem. Without the improvement margin, runs spent many trials
        // re-sampling the incumbent's neighbourhood for gains far below the noise floor.
        let cat = |name: &str, n: usize| {
            Param::new(
                name,
                Domain::Categorical {
                    choices: (0..n).map(|i| ParamValue::Int(i as i64)).collect(),
                },
            )
        };
        let log = |name: &str, low: f64, high: f64| {
            Param::new(
                name,
                Domain::Float {
                    low,
                    high,
                    log: true,
                },
            )
        };
        let space = SearchSpace::new(vec![
            cat("solver", 4),
            cat("penalty", 3),
            log("reg", 1e-7, 1.0),
            log("step", 1e-5, 1.0),
        ])
        .unwrap();
        let index = |p: &Params, k: &str| match p[k] {
            ParamValue::Int(i) => i as usize,
            _ => panic!(),
        };
        let f = |p: &Params| {
            const FLOOR: [[f64; 3]; 4] = [
                [0.10, 0.14, 0.12],
                [0.08, 0.16, 0.11],
                [0.12, 0.15, 0.03],
                [0.20, 0.25, 0.22],
            ];
            let (s, q) = (index(p, "solver"), index(p, "penalty"));
            let (r, e) = (value(p, "reg").log10(), value(p, "step").log10());
            let best_r = -5.5 + 0.8 * s as f64 + 0.5 * q as f64;
            let v = FLOOR[s][q] + 0.03 * (r - best_r).powi(2) + 0.04 * (e + 2.0).powi(2);
            let error = if r > -1.5 { 0.4 } else { v.min(0.4) };
            [("error".to_string(), error)].into()
        };
        let obj = [minimize("error")];
        let s = BayesStrategy {
            initial_trials: 8,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let mut polish = 0;
        let mut pairs_tried = 0;
        for seed in 0..4 {
            let h = run_seeded(&s, &space, &obj, &[], 30, seed, f);
            let mut best: Option<(f64, Vec<f64>)> = None;
            let mut pairs = std::collections::BTreeSet::new();
            for o in &h {
                let u = space.to_unit(&o.params).unwrap();
                let e = o.metrics["error"];
                pairs.insert((index(&o.params, "solver"), index(&o.params, "penalty")));
                if let Some((b, bu)) = &best {
                    let near = u.iter().zip(bu).all(|(x, y)| (x - y).abs() < 0.05);
                    // A trial beside the incumbent that gains less than 0.001 (1/400 of
                    // the range) or nothing.
                    if o.number >= 8 && near && e > b - 1e-3 {
                        polish += 1;
                    }
                }
                if best.as_ref().is_none_or(|(b, _)| e < *b) {
                    best = Some((e, u));
                }
            }
            pairs_tried += pairs.len();
        }
        // Without the margin: 35 polishing trials and 35 (solver, penalty) pairs tried over
        // the 4 runs; with it 13 and 43 (of 48).
        assert!(polish < 24, "{polish} trials polished an incumbent");
        assert!(pairs_tried >= 40, "only {pairs_tried} pairs tried");
    }

    /// Two equally good basins, one cheap and one dear (`train_s` grows 55-fold across x):
    /// with the cost metric the model's trials go to the cheap basin more often and the study
    /// spends less, and the best loss found is as good.
    #[test]
    fn a_cost_metric_steers_trials_to_cheap_configurations() {
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0), float("y", 0.0, 1.0)]).unwrap();
        let obj = [minimize("loss")];
        let f = |p: &Params| {
            let (x, y) = (value(p, "x"), value(p, "y"));
            let loss = 100.0 * ((x - 0.25) * (x - 0.75)).powi(2) + (y - 0.5).powi(2);
            BTreeMap::from([
                ("loss".to_string(), loss),
                ("train_s".to_string(), (4.0 * x).exp()),
            ])
        };
        let with = |cost_metric: Option<&str>| BayesStrategy {
            initial_trials: 6,
            measured_noise: false,
            cost_metric: cost_metric.map(str::to_string),
            input_warp: false,
            trust_region: false,
        };
        let (mut cheap, mut spent, mut best) = ([0usize; 2], [0.0f64; 2], [0.0f64; 2]);
        for (k, s) in [with(None), with(Some("train_s"))].iter().enumerate() {
            for seed in 0..6 {
                let h = run_seeded(s, &space, &obj, &[], 24, seed, f);
                let model = &h[6..];
                cheap[k] += model.iter().filter(|o| value(&o.params, "x") < 0.5).count();
                spent[k] += model.iter().map(|o| o.metrics["train_s"]).sum::<f64>();
                best[k] += h
                    .iter()
                    .map(|o| o.metrics["loss"])
                    .fold(f64::INFINITY, f64::min);
            }
        }
        assert!(
            cheap[1] >= cheap[0] + 12,
            "model trials in the cheap basin: {cheap:?}"
        );
        // Measured: 47 and 67 of 108 model trials in the cheap basin, 1396 and 998 s spent.
        assert!(
            spent[1] < 0.8 * spent[0],
            "cost of the model trials: {spent:?}"
        );
        assert!(
            best[1] / 6.0 < 0.01,
            "mean best loss {} (plain {})",
            best[1] / 6.0,
            best[0] / 6.0
        );
    }

    #[test]
    fn cost_cooling_falls_from_one_to_zero_over_the_budget() {
        assert_eq!(cost_exponent(8, 8, Some(40)), 1.0);
        assert_eq!(cost_exponent(24, 8, Some(40)), 0.5);
        assert_eq!(cost_exponent(40, 8, Some(40)), 0.0);
        assert_eq!(cost_exponent(60, 8, Some(40)), 0.0);
        assert_eq!(cost_exponent(30, 8, None), 1.0);
        // A budget no larger than the Sobol phase: the model's trials ignore cost.
        assert_eq!(cost_exponent(8, 8, Some(8)), 0.0);
    }

    /// A cost metric no trial reports changes nothing.
    #[test]
    fn an_unreported_cost_metric_is_plain_expected_improvement() {
        let space = SearchSpace::new(vec![float("x", 0.0, 1.0), float("y", 0.0, 1.0)]).unwrap();
        let obj = [minimize("loss")];
        let plain = BayesStrategy {
            initial_trials: 4,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
        let h = run(&plain, &space, &obj, &[], 10, |p| {
            [(
                "loss".to_string(),
                (value(p, "x") - 0.4).powi(2) + value(p, "y"),
            )]
            .into()
        });
        let costed = BayesStrategy {
            cost_metric: Some("gpu_seconds".into()),
            input_warp: false,
            trust_region: false,
            ..plain.clone()
        };
        let mut ctx = SuggestContext::new(&space, 10, 11);
        ctx.objectives = &obj;
        ctx.history = &h;
        assert_eq!(plain.suggest(&ctx).unwrap(), costed.suggest(&ctx).unwrap());
    }

    #[test]
    fn the_improvement_margin_is_one_noise_sd_with_one_objective() {
        let prior = Prior::default_for(2);
        let mut hyper = prior.start();
        // Noise variance 0.04 + the floor.
        let last = hyper.theta.len() - 1;
        hyper.theta[last] = 0.04f64.ln();
        let sd = (0.04 + crate::gp::NOISE_FLOOR).sqrt();
        assert!((improvement_margin(&hyper, 1, 0.0) - sd).abs() < 1e-12);
        assert_eq!(improvement_margin(&hyper, 2, 0.0), 0.0);
        assert_eq!(improvement_margin(&hyper, 2, 0.3), 0.0);
        // At the floor: 1% of the standardized spread.
        hyper.theta[last] = -40.0;
        assert!((improvement_margin(&hyper, 1, 0.0) - 0.01).abs() < 1e-9);
        // With measured noise the incumbent's known variance adds to the fitted one.
        let with_known = improvement_margin(&hyper, 1, 0.0899);
        assert!((with_known - 0.3).abs() < 1e-9, "{with_known}");
    }

    #[test]
    fn subset_keeps_the_best_and_a_spread() {
        let v: Vec<f64> = (0..10).map(|i| (10 - i) as f64).collect();
        assert_eq!(subset(&v, 20), (0..10).collect::<Vec<_>>());
        let s = subset(&v, 4);
        assert_eq!(s.len(), 4);
        assert!(s.contains(&9) && s.contains(&8));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn suggestions_lie_in_space(space in arb_space(), seed in any::<u64>(), n in 0u64..14) {
            let obj = [minimize("loss")];
            let mut history = Vec::new();
            for t in 0..n {
                let p = SobolStrategy.suggest(&SuggestContext::new(&space, t, seed)).unwrap();
                let u = space.to_unit(&p).unwrap();
                let loss = u.iter().enumerate().map(|(i, v)| ((i + 1) as f64 * v).sin()).sum::<f64>();
                let outcome = if t % 5 == 4 { Outcome::Failed } else { Outcome::Complete };
                history.push(Observation {
                    number: t,
                    params: Arc::new(p),
                    outcome,
                    metrics: Arc::new([("loss".to_string(), loss)].into()),
                });
            }
            let pending = vec![SobolStrategy.suggest(&SuggestContext::new(&space, 99, seed)).unwrap()];
            let mut ctx = SuggestContext::new(&space, n, seed);
            ctx.objectives = &obj;
            ctx.history = &history;
            ctx.pending = &pending;
            let s = BayesStrategy {
            initial_trials: 3,
            measured_noise: false,
            cost_metric: None,
            input_warp: false,
            trust_region: false,
        };
            let p = s.suggest(&ctx).unwrap();
            prop_assert!(space.contains(&p));
        }
    }
}
