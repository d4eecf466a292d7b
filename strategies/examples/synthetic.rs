//! In-process quality check of a strategy on the synthetic problems of `bench/compare`
//! (Branin, Hartmann-6, Ackley-5, Rosenbrock-4, the mixed problem, Gardner's constrained
//! problem, ZDT1 and DTLZ2), for quick iteration on `bayes` without the daemon or Python.
//! The comparison against Optuna is `bench/compare/compare.py`; this example uses the same
//! functions, spaces, budgets and study seeds (0, 1, …), and runs the strategy the way the
//! daemon does for a sequential study, so its numbers should match that harness's quantune
//! columns for these problems, in seconds instead of minutes.
//!
//! `cargo run --release -p quantune-strategies --example synthetic -- [kind] [seeds] [problems]`
//! (defaults: `bayes`, 10 seeds, every problem; problems comma-separated). Prints the mean,
//! median and worst best value (hypervolume for ZDT1 and DTLZ2) per problem.

use quantune_strategies::{
    pareto, registry, Constraint, Direction, Domain, Objective, Observation, Outcome, Param,
    ParamValue, Params, SearchSpace, SuggestContext,
};
use std::collections::BTreeMap;
use std::f64::consts::{E, PI};
use std::sync::Arc;

/// One benchmark problem.
struct Problem {
    name: &'static str,
    space: SearchSpace,
    objectives: Vec<Objective>,
    constraints: Vec<Constraint>,
    evaluate: fn(&Params) -> BTreeMap<String, f64>,
    /// Hypervolume reference for multi-objective problems.
    reference: Option<Vec<f64>>,
    budget: u64,
}

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

fn cube(n: usize, low: f64, high: f64) -> SearchSpace {
    SearchSpace::new((0..n).map(|i| float(&format!("x{i}"), low, high)).collect()).unwrap()
}

fn num(p: &Params, k: &str) -> f64 {
    match &p[k] {
        ParamValue::Float(x) => *x,
        ParamValue::Int(i) => *i as f64,
        other => panic!("{k}: {other:?}"),
    }
}

fn xs(p: &Params, n: usize) -> Vec<f64> {
    (0..n).map(|i| num(p, &format!("x{i}"))).collect()
}

fn loss(v: f64) -> BTreeMap<String, f64> {
    [("loss".to_string(), v)].into()
}

fn branin(p: &Params) -> BTreeMap<String, f64> {
    let (x1, x2) = (num(p, "x1"), num(p, "x2"));
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    loss((x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0)
}

fn hartmann6(p: &Params) -> BTreeMap<String, f64> {
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    let x = xs(p, 6);
    let v: f64 = (0..4)
        .map(|i| {
            let inner: f64 = (0..6)
                .map(|j| A[i][j] * (x[j] - 1e-4 * P[i][j]).powi(2))
                .sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum();
    loss(-v)
}

fn ackley5(p: &Params) -> BTreeMap<String, f64> {
    let x = xs(p, 5);
    let d = x.len() as f64;
    let sq: f64 = x.iter().map(|v| v * v).sum();
    let cs: f64 = x.iter().map(|v| (2.0 * PI * v).cos()).sum();
    loss(-20.0 * (-0.2 * (sq / d).sqrt()).exp() - (cs / d).exp() + 20.0 + E)
}

fn rosenbrock4(p: &Params) -> BTreeMap<String, f64> {
    let x = xs(p, 4);
    loss(
        (0..3)
            .map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2))
            .sum(),
    )
}

fn mixed(p: &Params) -> BTreeMap<String, f64> {
    let (lr, warm, bs) = (num(p, "lr"), num(p, "warmup"), num(p, "batch"));
    let fmt = match &p["format"] {
        ParamValue::Str(s) => s.as_str(),
        _ => unreachable!(),
    };
    let (shift, penalty) = match fmt {
        "bf16" => (0.0, 0.6),
        "int8" => (0.3, 0.0),
        "int4" => (-0.4, 0.9),
        _ => (0.2, 0.3),
    };
    loss(
        (lr.log10() + 3.0 + shift).powi(2)
            + ((warm - 12.0) / 8.0).powi(2)
            + 0.5 * (bs.log2() - 5.0).powi(2) / 4.0
            + penalty,
    )
}

fn gardner(p: &Params) -> BTreeMap<String, f64> {
    let (x1, x2) = (num(p, "x1"), num(p, "x2"));
    [
        ("loss".to_string(), (2.0 * x1).cos() * x2.cos() + x1.sin()),
        ("c".to_string(), x1.cos() * x2.cos() - x1.sin() * x2.sin()),
    ]
    .into()
}

fn zdt1(p: &Params) -> BTreeMap<String, f64> {
    let x = xs(p, 6);
    let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / 5.0;
    [
        ("f1".to_string(), x[0]),
        ("f2".to_string(), g * (1.0 - (x[0] / g).sqrt())),
    ]
    .into()
}

fn dtlz2(p: &Params) -> BTreeMap<String, f64> {
    let x = xs(p, 6);
    let g: f64 = x[2..].iter().map(|v| (v - 0.5).powi(2)).sum();
    let (a, b) = (x[0] * PI / 2.0, x[1] * PI / 2.0);
    [
        ("f1".to_string(), (1.0 + g) * a.cos() * b.cos()),
        ("f2".to_string(), (1.0 + g) * a.cos() * b.sin()),
        ("f3".to_string(), (1.0 + g) * a.sin()),
    ]
    .into()
}

fn minimize(metric: &str) -> Objective {
    Objective {
        metric: metric.into(),
        direction: Direction::Minimize,
    }
}

fn problems() -> Vec<Problem> {
    let single = |name, space, evaluate| Problem {
        name,
        space,
        objectives: vec![minimize("loss")],
        constraints: vec![],
        evaluate,
        reference: None,
        budget: 40,
    };
    let mixed_space = SearchSpace::new(vec![
        Param::new(
            "lr",
            Domain::Float {
                low: 1e-5,
                high: 1e-1,
                log: true,
            },
        ),
        Param::new(
            "warmup",
            Domain::Int {
                low: 0,
                high: 40,
                step: 1,
                log: false,
            },
        ),
        Param::new(
            "batch",
            Domain::IntValues {
                values: vec![8, 16, 32, 64, 128, 256],
            },
        ),
        Param::new(
            "format",
            Domain::Categorical {
                choices: ["bf16", "int8", "int4", "nf4"]
                    .iter()
                    .map(|s| ParamValue::Str(s.to_string()))
                    .collect(),
            },
        ),
    ])
    .unwrap();
    vec![
        single(
            "branin",
            SearchSpace::new(vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)]).unwrap(),
            branin,
        ),
        single("hartmann6", cube(6, 0.0, 1.0), hartmann6),
        single("ackley5", cube(5, -32.768, 32.768), ackley5),
        single("rosenbrock4", cube(4, -5.0, 10.0), rosenbrock4),
        single("mixed", mixed_space, mixed),
        Problem {
            constraints: vec![Constraint {
                metric: "c".into(),
                min: None,
                max: Some(0.5),
            }],
            ..single(
                "gardner",
                SearchSpace::new(vec![float("x1", 0.0, 6.0), float("x2", 0.0, 6.0)]).unwrap(),
                gardner,
            )
        },
        Problem {
            name: "zdt1",
            space: cube(6, 0.0, 1.0),
            objectives: vec![minimize("f1"), minimize("f2")],
            constraints: vec![],
            evaluate: zdt1,
            reference: Some(vec![1.1, 1.1]),
            budget: 100,
        },
        Problem {
            name: "dtlz2",
            space: cube(6, 0.0, 1.0),
            objectives: vec![minimize("f1"), minimize("f2"), minimize("f3")],
            constraints: vec![],
            evaluate: dtlz2,
            reference: Some(vec![1.1, 1.1, 1.1]),
            budget: 100,
        },
    ]
}

/// One run: the best feasible loss (single objective) or the hypervolume.
fn run(kind: &str, problem: &Problem, seed: u64) -> f64 {
    let strategy = registry::build(kind, &registry::StrategyOptions::default()).unwrap();
    let mut history: Vec<Observation> = Vec::new();
    for t in 0..problem.budget {
        let mut ctx = SuggestContext::new(&problem.space, t, seed);
        ctx.objectives = &problem.objectives;
        ctx.constraints = &problem.constraints;
        ctx.history = &history;
        let params = strategy.suggest(&ctx).unwrap();
        let metrics = (problem.evaluate)(&params);
        let feasible = problem.constraints.iter().all(|c| c.satisfied_by(&metrics));
        history.push(Observation {
            number: t,
            params: Arc::new(params),
            outcome: if feasible {
                Outcome::Complete
            } else {
                Outcome::Infeasible
            },
            metrics: Arc::new(metrics),
        });
    }
    let feasible = history.iter().filter(|o| o.outcome == Outcome::Complete);
    match &problem.reference {
        Some(reference) => {
            let points: Vec<Vec<f64>> = feasible
                .map(|o| {
                    problem
                        .objectives
                        .iter()
                        .map(|m| o.metrics[&m.metric])
                        .collect()
                })
                .collect();
            pareto::hypervolume(&points, reference)
        }
        None => feasible
            .map(|o| o.metrics["loss"])
            .fold(f64::INFINITY, f64::min),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("bayes", String::as_str);
    let seeds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let only: Option<Vec<&str>> = args.get(3).map(|s| s.split(',').collect());
    for problem in problems() {
        if only.as_ref().is_some_and(|o| !o.contains(&problem.name)) {
            continue;
        }
        let start = std::time::Instant::now();
        let mut values: Vec<f64> = (0..seeds).map(|s| run(kind, &problem, s)).collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        values.sort_by(f64::total_cmp);
        let half = values.len() / 2;
        let median = if values.len() % 2 == 0 {
            0.5 * (values[half - 1] + values[half])
        } else {
            values[half]
        };
        println!(
            "{:12} mean {:>10.4} median {:>10.4} worst {:>10.4}  ({:.1} s)",
            problem.name,
            mean,
            median,
            if problem.reference.is_some() {
                values[0]
            } else {
                values[values.len() - 1]
            },
            start.elapsed().as_secs_f64()
        );
    }
}
