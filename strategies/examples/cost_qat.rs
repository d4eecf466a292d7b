//! Cost awareness on a synthetic QAT fine-tuning surrogate: does `bayes` with
//! `strategy.cost_metric = "train_s"` reach the same quality in fewer GPU-seconds than without?
//!
//! The surrogate: the eval-loss increase of a quantized fine-tune (`eval_loss_delta`, to
//! minimize) as a function of the learning rate (log), the batch size, the number format and a
//! warm-up fraction. The best learning rate grows with the batch size (the linear scaling
//! rule), fp8 is the best format (int8 +0.02, bf16 +0.01, int4 +0.10) and batch 16 the best
//! size; the optimum is fp8 / batch 16 / lr 1e-4 / warm-up 0.1 at 0 (a second variant moves
//! the best batch size to 64, where trials cost three times as much). A trial's cost
//! (`train_s`, GPU-seconds) grows with the batch size and depends on the format (int4's
//! fake-quantization is the slowest, bf16 the fastest): from about 9 s (bf16, batch 4) to 213 s
//! (int4, batch 128). The loss has a little measurement noise (sd 0.002).
//!
//! For each seed the same study (40 trials, 8 Sobol, `budget.max_trials = 40` so cost cooling
//! applies) runs through `bayes` with and without the cost metric. Printed per variant: the
//! mean GPU-seconds the whole study spent, the mean best loss at the end, how many runs reached
//! a loss within 0.01 of the optimum, and the mean GPU-seconds spent until they did (a run that
//! never did counts its whole spend).
//!
//! `cargo run --release -p quantune-strategies --example cost_qat -- [seeds]` (default 30).

use quantune_strategies::bayes::BayesStrategy;
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
/// A run "reaches" the optimum with a loss this close to it.
const TARGET: f64 = 0.01;

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
                values: vec![4, 8, 16, 32, 64, 128],
            },
        ),
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
            "warmup",
            Domain::Float {
                low: 0.0,
                high: 0.3,
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

fn num(p: &Params, k: &str) -> f64 {
    match &p[k] {
        ParamValue::Int(i) => *i as f64,
        ParamValue::Float(x) => *x,
        other => panic!("{other:?}"),
    }
}

/// The true (noise-free) eval-loss increase, with the best batch size `2^best_log2_batch`.
fn loss(p: &Params, best_log2_batch: f64) -> f64 {
    let base = [0.10, 0.02, 0.0, 0.01][format_of(p)];
    let b = num(p, "batch_size").log2();
    let best_lr = -4.0 + 0.3 * (b - 4.0);
    base + 0.08 * (num(p, "learning_rate").log10() - best_lr).powi(2)
        + 0.01 * (b - best_log2_batch).powi(2)
        + 0.5 * (num(p, "warmup") - 0.1).powi(2)
}

/// GPU-seconds of one trial.
fn cost(p: &Params) -> f64 {
    let speed = [1.6, 1.2, 1.0, 0.8][format_of(p)];
    5.0 + 20.0 * (num(p, "batch_size") / 16.0).powf(0.9) * speed
}

/// What one run spent and found.
struct Run {
    spent: f64,
    best: f64,
    /// GPU-seconds spent up to and including the first trial within [`TARGET`] of the optimum.
    to_target: Option<f64>,
}

fn run(seed: u64, cost_metric: Option<&str>, best_log2_batch: f64) -> Run {
    let space = space();
    let objectives = [Objective {
        metric: "eval_loss_delta".into(),
        direction: Direction::Minimize,
    }];
    let strategy = BayesStrategy {
        initial_trials: 8,
        measured_noise: false,
        cost_metric: cost_metric.map(str::to_string),
        input_warp: false,
        trust_region: false,
    };
    let mut noise = StdRng::seed_from_u64(seed ^ 0x636f7374);
    let mut history: Vec<Observation> = Vec::new();
    let (mut spent, mut best, mut to_target) = (0.0, f64::INFINITY, None);
    for t in 0..BUDGET {
        let mut ctx = SuggestContext::new(&space, t, seed);
        ctx.objectives = &objectives;
        ctx.history = &history;
        ctx.max_trials = Some(BUDGET);
        let params = strategy.suggest(&ctx).unwrap();
        let z: f64 = StandardNormal.sample(&mut noise);
        let (truth, c) = (loss(&params, best_log2_batch), cost(&params));
        spent += c;
        best = f64::min(best, truth);
        if truth <= TARGET && to_target.is_none() {
            to_target = Some(spent);
        }
        let metrics: BTreeMap<String, f64> = [
            ("eval_loss_delta".to_string(), truth + 0.002 * z),
            ("train_s".to_string(), c),
        ]
        .into();
        history.push(Observation {
            number: t,
            params: Arc::new(params),
            outcome: Outcome::Complete,
            metrics: Arc::new(metrics),
        });
    }
    Run {
        spent,
        best,
        to_target,
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    for (problem, best_log2_batch) in [
        ("optimum at batch 16 (mid-priced)", 4.0),
        ("optimum at batch 64 (dear)", 6.0),
    ] {
        println!("{problem}");
        println!(
            "{:<28}{:>14}{:>14}{:>12}{:>22}",
            "variant", "GPU-s spent", "best loss", "reached", "GPU-s to reach"
        );
        for (label, metric) in [
            ("cost_metric = \"train_s\"", Some("train_s")),
            ("no cost metric", None),
        ] {
            let start = std::time::Instant::now();
            let runs: Vec<Run> = (0..seeds)
                .map(|s| run(s, metric, best_log2_batch))
                .collect();
            let n = runs.len() as f64;
            let reached = runs.iter().filter(|r| r.to_target.is_some()).count();
            println!(
                "{:<28}{:>14.0}{:>14.4}{:>8}/{:<3}{:>22.0}   ({:.1} s)",
                label,
                runs.iter().map(|r| r.spent).sum::<f64>() / n,
                runs.iter().map(|r| r.best).sum::<f64>() / n,
                reached,
                seeds,
                runs.iter()
                    .map(|r| r.to_target.unwrap_or(r.spent))
                    .sum::<f64>()
                    / n,
                start.elapsed().as_secs_f64()
            );
        }
    }
}
