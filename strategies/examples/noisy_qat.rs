//! Heteroscedastic noise on a synthetic QAT latency surrogate: does `bayes` rank the true best
//! configuration first more often when the trials report their measured spread
//! (`latency_ms_spread`) than when it must fit one constant noise?
//!
//! The surrogate: latency (ms) of a quantized model as a function of the number format, the
//! quantization group size, the batch size and a prefetch fraction; the true optimum is
//! int4 / group 128 / batch 8 / prefetch 0.3 at 6.0 ms. Each trial times 5 repeats with noise
//! whose standard deviation depends on the format (int4 kernels 0.6 ms, fp8 0.3, int8 0.05,
//! bf16 0.02 — new low-bit kernels jitter, mature ones do not) and reports their median as
//! `latency_ms` and max − min as `latency_ms_spread`, as the `builtin:qat-bench` workload does.
//!
//! For each seed the same study runs twice through `bayes` (40 trials, 8 Sobol), both with the
//! spreads in the trials' metrics: once with `measured_noise` (heteroscedastic GP: each trial's
//! spread is its known noise), once without (one constant noise fitted).
//! At the end, the trial ranked first — by the model ([`bayes::ranking`], the posterior mean) and
//! by the measured value (what a plain leaderboard does) — is "right" when its true latency is
//! the lowest true latency among the trials the study ran. Prints how often each is right and
//! the mean true latency of the trial ranked first.
//!
//! `cargo run --release -p quantune-strategies --example noisy_qat -- [seeds]` (default 40).

use quantune_strategies::bayes::{self, BayesStrategy};
use quantune_strategies::{
    Direction, Domain, Objective, Observation, Outcome, Param, ParamValue, Params, SearchSpace,
    Strategy, SuggestContext,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::collections::BTreeMap;
use std::sync::Arc;

const FORMATS: [&str; 4] = ["int4", "int8", "fp8", "bf16"];
const BUDGET: u64 = 40;
const REPEATS: usize = 5;

fn space() -> SearchSpace {
    SearchSpace::new(vec![
        Param::new(
            "format",
            Domain::Categorical {
                choices: FORMATS
                    .iter()
                    .map(|f| ParamValue::Str(f.to_string()))
                    .collect(),
            },
        ),
        Param::new(
            "group_size",
            Domain::IntValues {
                values: vec![32, 64, 128, 256],
            },
        ),
        Param::new(
            "batch_size",
            Domain::IntValues {
                values: vec![1, 2, 4, 8, 16, 32],
            },
        ),
        Param::new(
            "prefetch",
            Domain::Float {
                low: 0.0,
                high: 1.0,
                log: false,
            },
        ),
    ])
    .unwrap()
}

fn format_of(p: &Params) -> usize {
    match &p["format"] {
        ParamValue::Str(s) => FORMATS.iter().position(|f| f == s).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn int(p: &Params, k: &str) -> f64 {
    match &p[k] {
        ParamValue::Int(i) => *i as f64,
        other => panic!("{other:?}"),
    }
}

/// The true (noise-free) latency in ms.
fn latency(p: &Params) -> f64 {
    let base = [6.0, 6.25, 6.15, 9.0][format_of(p)];
    let group = 1.0 + 0.04 * (int(p, "group_size") / 128.0).log2().abs();
    let batch = 0.12 * (int(p, "batch_size").log2() - 3.0).powi(2);
    let prefetch = match p["prefetch"] {
        ParamValue::Float(x) => 1.5 * (x - 0.3).powi(2),
        _ => unreachable!(),
    };
    base * group + batch + prefetch
}

/// The measurement noise's standard deviation (ms) of one timed repeat.
fn jitter(p: &Params) -> f64 {
    [0.6, 0.05, 0.3, 0.02][format_of(p)]
}

/// One trial's metrics: median and spread of `REPEATS` noisy timings.
fn measure(p: &Params, rng: &mut StdRng) -> BTreeMap<String, f64> {
    let mut runs: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            latency(p) + jitter(p) * z
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    [
        ("latency_ms".to_string(), runs[REPEATS / 2]),
        ("latency_ms_spread".to_string(), runs[REPEATS - 1] - runs[0]),
    ]
    .into()
}

/// How one run ended: whether the model's and the measured first place are the true best among
/// the trials run, and their true latencies.
struct Outcome2 {
    model_right: bool,
    measured_right: bool,
    model_true: f64,
    measured_true: f64,
}

fn run(seed: u64, measured_noise: bool) -> Outcome2 {
    let space = space();
    let objectives = [Objective {
        metric: "latency_ms".into(),
        direction: Direction::Minimize,
    }];
    let strategy = BayesStrategy {
        initial_trials: 8,
        measured_noise,
        cost_metric: None,
        input_warp: false,
    };
    // The measurement noise is the same stream for both variants of a seed.
    let mut noise = StdRng::seed_from_u64(seed ^ 0x6e6f697365);
    let mut history: Vec<Observation> = Vec::new();
    for t in 0..BUDGET {
        let mut ctx = SuggestContext::new(&space, t, seed);
        ctx.objectives = &objectives;
        ctx.history = &history;
        let params = strategy.suggest(&ctx).unwrap();
        let metrics = measure(&params, &mut noise);
        history.push(Observation {
            number: t,
            params: Arc::new(params),
            outcome: Outcome::Complete,
            metrics: Arc::new(metrics),
        });
    }
    let mut ctx = SuggestContext::new(&space, BUDGET, seed);
    ctx.objectives = &objectives;
    ctx.history = &history;
    let truth = |n: u64| latency(&history[n as usize].params);
    let best_true = (0..BUDGET).map(truth).fold(f64::INFINITY, f64::min);
    let model_first = bayes::ranking(&ctx, &strategy).unwrap()[0].0;
    let measured_first = (0..BUDGET)
        .min_by(|a, b| {
            history[*a as usize].metrics["latency_ms"]
                .total_cmp(&history[*b as usize].metrics["latency_ms"])
        })
        .unwrap();
    Outcome2 {
        model_right: truth(model_first) <= best_true + 1e-12,
        measured_right: truth(measured_first) <= best_true + 1e-12,
        model_true: truth(model_first),
        measured_true: truth(measured_first),
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    println!(
        "{:<34}{:>16}{:>18}{:>16}{:>18}",
        "variant", "model right", "model true ms", "measured right", "measured true ms"
    );
    for (label, measured_noise) in [
        ("measured_noise (heteroscedastic)", true),
        ("constant noise fitted", false),
    ] {
        let start = std::time::Instant::now();
        let outs: Vec<Outcome2> = (0..seeds).map(|s| run(s, measured_noise)).collect();
        let n = outs.len() as f64;
        let frac = |f: &dyn Fn(&Outcome2) -> bool| outs.iter().filter(|o| f(o)).count();
        let mean = |f: &dyn Fn(&Outcome2) -> f64| outs.iter().map(f).sum::<f64>() / n;
        println!(
            "{:<34}{:>10}/{:<5}{:>18.3}{:>10}/{:<5}{:>18.3}   ({:.1} s)",
            label,
            frac(&|o| o.model_right),
            seeds,
            mean(&|o| o.model_true),
            frac(&|o| o.measured_right),
            seeds,
            mean(&|o| o.measured_true),
            start.elapsed().as_secs_f64()
        );
    }
}
