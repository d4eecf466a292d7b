//! `bayes` with and without its trust region (`strategy.trust_region`) on problems in neither
//! harness, where TuRBO-style regions are meant to help: Ackley and Levy in `d` dimensions
//! (Ackley on [−5, 10]^d, Levy on [−10, 10]^d, both with optimum 0), sequential trials,
//! `max_trials` set as the daemon sets it. Prints the mean and median best value per variant.
//!
//! `cargo run --release -p quantune-strategies --example trust_region -- [d] [budget] [seeds]`
//! (defaults: 10 dimensions, 120 trials, 20 seeds).

use quantune_strategies::bayes::BayesStrategy;
use quantune_strategies::{
    Direction, Domain, Objective, Observation, Outcome, Param, SearchSpace, Strategy,
    SuggestContext,
};
use std::collections::BTreeMap;
use std::f64::consts::{E, PI};
use std::sync::Arc;

/// Ackley on [−5, 10]^d from unit coordinates.
fn ackley(u: &[f64]) -> f64 {
    let x: Vec<f64> = u.iter().map(|v| v * 15.0 - 5.0).collect();
    let d = x.len() as f64;
    let a = (x.iter().map(|v| v * v).sum::<f64>() / d).sqrt();
    let b = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / d;
    -20.0 * (-0.2 * a).exp() - b.exp() + 20.0 + E
}

/// Levy on [−10, 10]^d from unit coordinates.
fn levy(u: &[f64]) -> f64 {
    let w: Vec<f64> = u.iter().map(|v| 1.0 + (v * 20.0 - 11.0) / 4.0).collect();
    let n = w.len();
    let mut s = (PI * w[0]).sin().powi(2);
    for wi in &w[..n - 1] {
        s += (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2));
    }
    s + (w[n - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[n - 1]).sin().powi(2))
}

/// The best value one study finds.
fn run(trust_region: bool, d: usize, budget: u64, seed: u64, f: fn(&[f64]) -> f64) -> f64 {
    let space = SearchSpace::new(
        (0..d)
            .map(|i| {
                let domain = Domain::Float {
                    low: 0.0,
                    high: 1.0,
                    log: false,
                };
                Param::new(format!("x{i:02}"), domain)
            })
            .collect(),
    )
    .unwrap();
    let strategy = BayesStrategy {
        trust_region,
        ..BayesStrategy::default()
    };
    let objectives = [Objective {
        metric: "loss".into(),
        direction: Direction::Minimize,
    }];
    let mut history: Vec<Observation> = Vec::new();
    let mut best = f64::INFINITY;
    for t in 0..budget {
        let mut ctx = SuggestContext::new(&space, t, seed);
        ctx.objectives = &objectives;
        ctx.history = &history;
        ctx.max_trials = Some(budget);
        let params = strategy.suggest(&ctx).unwrap();
        let value = f(&space.to_unit(&params).unwrap());
        best = best.min(value);
        let metrics: BTreeMap<String, f64> = [("loss".to_string(), value)].into();
        history.push(Observation {
            number: t,
            outcome: Outcome::Complete,
            metrics: Arc::new(metrics),
            params: Arc::new(params),
        });
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (d, budget, seeds) = (arg(1, 10) as usize, arg(2, 120), arg(3, 20));
    for (name, f) in [("ackley", ackley as fn(&[f64]) -> f64), ("levy", levy)] {
        for trust_region in [false, true] {
            let mut v: Vec<f64> = (0..seeds)
                .map(|s| run(trust_region, d, budget, s, f))
                .collect();
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            println!(
                "{name}{d:<3} {budget} trials  trust_region = {trust_region:<5}  mean {mean:.3}  median {:.3}",
                v[v.len() / 2]
            );
        }
    }
}
