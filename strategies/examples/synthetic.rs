//! In-process quality check of a strategy on the synthetic problems of `bench/compare`
//! (Branin, Hartmann-6, Ackley-5, Rosenbrock-4, the mixed problem, Gardner's constrained
//! problem, ZDT1 and DTLZ2), plus two categorical-heavy problems that are in no harness
//! (`linear-cat`: a linear model's loss × penalty × two log floats, the shape of issue 15's
//! problem where `bayes` fell to random search's level; `cat-interact`: two interacting
//! 4-way categoricals × two log floats, 30 trials each) and two badly scaled ones for input
//! warping (`skewed-hartmann6`, `cliff`) and two with plateaus (`stepped-hartmann6`,
//! `stepped-branin`), 40 trials each, for quick iteration on `bayes`
//! without the daemon or Python.
//! The comparison against Optuna is `bench/compare/compare.py`; this example uses the same
//! functions, spaces, budgets and study seeds (0, 1, …), and runs the strategy the way the
//! daemon does for a sequential study, so its numbers should match that harness's quantune
//! columns for these problems, in seconds instead of minutes.
//!
//! `cargo run --release -p quantune-strategies --example synthetic -- [kind] [seeds] [problems]`
//! (defaults: `bayes`, 10 seeds, every problem; problems comma-separated; kind `bayes-warp` is
//! `bayes` with its input warping on, `bayes-notr` `bayes` without its trust region). Prints the mean,
//! median and worst best value (hypervolume for ZDT1 and DTLZ2) per problem.

use quantune_strategies::bayes::BayesStrategy;
use quantune_strategies::{
    pareto, registry, Constraint, Direction, Domain, Objective, Observation, Outcome, Param,
    ParamValue, Params, SearchSpace, Strategy, SuggestContext,
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

/// Hartmann-6 seen through skewed coordinates: `x_j = u_j^{p_j}` with exponents that crowd
/// some coordinates' action into one end of the range (badly scaled parameters; in no
/// harness, for input warping).
fn skewed_hartmann6(p: &Params) -> BTreeMap<String, f64> {
    const POW: [f64; 6] = [3.5, 0.3, 1.0, 2.7, 0.4, 1.6];
    let mut q = p.clone();
    for (j, e) in POW.iter().enumerate() {
        let k = format!("x{j}");
        q.insert(k.clone(), ParamValue::Float(num(p, &k).powf(*e)));
    }
    hartmann6(&q)
}

/// A decision tree's shape: an integer depth, an impurity threshold that only helps near 0
/// (the loss climbs within the first 3% of its range), a fraction best near its top and a
/// log-scaled weight (in no harness, for input warping).
fn cliff(p: &Params) -> BTreeMap<String, f64> {
    let depth = num(p, "depth");
    let threshold = num(p, "threshold");
    let fraction = num(p, "fraction");
    let weight = num(p, "weight").log10();
    loss(
        (depth - 9.0).powi(2) / 40.0
            + 2.0 * (1.0 - (-threshold / 0.012).exp())
            + 3.0 * (1.0 - fraction).powf(0.5) * (0.2 + (weight + 2.0).powi(2) / 10.0)
            + 0.1 * (weight + 2.0).powi(2),
    )
}

/// Hartmann-6 rounded down to steps of 0.25: a piecewise-constant objective with plateaus,
/// the shape of a classifier's accuracy (in no harness).
fn stepped_hartmann6(p: &Params) -> BTreeMap<String, f64> {
    let v = hartmann6(p)["loss"];
    loss((v / 0.25).floor() * 0.25)
}

/// Branin rounded down to steps of 0.5 (in no harness).
fn stepped_branin(p: &Params) -> BTreeMap<String, f64> {
    let v = branin(p)["loss"];
    loss((v / 0.5).floor() * 0.5)
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

/// The index of a categorical choice among `choices`.
fn choice(p: &Params, k: &str, choices: &[&str]) -> usize {
    match &p[k] {
        ParamValue::Str(s) => choices.iter().position(|c| c == s).unwrap(),
        other => panic!("{k}: {other:?}"),
    }
}

const LOSSES: [&str; 5] = ["hinge", "log", "huber", "sqhinge", "perceptron"];
const PENALTIES: [&str; 3] = ["l2", "l1", "elasticnet"];

/// The shape of the issue's linear-model problem (a classifier's cross-validated error over a
/// loss, a penalty, a log regularization strength and a log step size): each (loss, penalty)
/// pair has its own floor and its own best regularization, one pair is clearly best
/// (huber + elasticnet, 0.02), the others 0.06–0.30; the step size's optimum depends on the
/// loss; too much regularization underfits to a plateau (error 0.37, the majority class).
fn linear_cat(p: &Params) -> BTreeMap<String, f64> {
    const FLOOR: [[f64; 3]; 5] = [
        [0.08, 0.12, 0.09],
        [0.07, 0.15, 0.10],
        [0.09, 0.13, 0.02],
        [0.10, 0.14, 0.11],
        [0.25, 0.30, 0.27],
    ];
    const ALPHA: [[f64; 3]; 5] = [
        [-4.0, -5.0, -4.5],
        [-3.0, -4.5, -3.5],
        [-3.5, -5.5, -2.5],
        [-4.5, -5.0, -4.0],
        [-5.5, -5.5, -5.5],
    ];
    const ETA: [f64; 5] = [-2.0, -1.0, -2.5, -3.0, -1.5];
    let (l, q) = (choice(p, "loss", &LOSSES), choice(p, "penalty", &PENALTIES));
    let (la, le) = (num(p, "alpha").log10(), num(p, "eta0").log10());
    let v = FLOOR[l][q] + 0.03 * (la - ALPHA[l][q]).powi(2) + 0.04 * (le - ETA[l]).powi(2);
    let underfit = la > -1.5;
    [(
        "error".to_string(),
        if underfit { 0.37 } else { v.min(0.37) },
    )]
    .into()
}

/// Two categoricals of 4 choices whose effects interact (no additive structure: the best
/// pair is not the pair of best marginals) and two log floats whose optimum moves with the
/// pair: `(a, b)` with table T[a][b] ∈ [0, 1] plus the distance to the pair's optimum.
fn cat_interact(p: &Params) -> BTreeMap<String, f64> {
    const NAMES: [&str; 4] = ["p", "q", "r", "s"];
    const T: [[f64; 4]; 4] = [
        [0.6, 0.3, 0.9, 0.5],
        [0.4, 0.8, 0.7, 0.0],
        [0.5, 0.6, 0.2, 0.8],
        [0.9, 0.4, 0.6, 0.5],
    ];
    let (a, b) = (choice(p, "a", &NAMES), choice(p, "b", &NAMES));
    let (x, y) = (num(p, "x").log10(), num(p, "y").log10());
    let (cx, cy) = (-3.0 + 0.5 * a as f64, -1.0 - 0.6 * b as f64);
    loss(T[a][b] + 0.25 * ((x - cx).powi(2) + (y - cy).powi(2)).sqrt())
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
    let log_float = |name: &str, low: f64, high: f64| {
        Param::new(
            name,
            Domain::Float {
                low,
                high,
                log: true,
            },
        )
    };
    let categorical = |name: &str, choices: &[&str]| {
        Param::new(
            name,
            Domain::Categorical {
                choices: choices
                    .iter()
                    .map(|s| ParamValue::Str(s.to_string()))
                    .collect(),
            },
        )
    };
    let linear_space = SearchSpace::new(vec![
        categorical("loss", &LOSSES),
        categorical("penalty", &PENALTIES),
        log_float("alpha", 1e-7, 1.0),
        log_float("eta0", 1e-5, 1.0),
    ])
    .unwrap();
    let interact_space = SearchSpace::new(vec![
        categorical("a", &["p", "q", "r", "s"]),
        categorical("b", &["p", "q", "r", "s"]),
        log_float("x", 1e-5, 1.0),
        log_float("y", 1e-5, 1.0),
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
        single("skewed-hartmann6", cube(6, 0.0, 1.0), skewed_hartmann6),
        single("stepped-hartmann6", cube(6, 0.0, 1.0), stepped_hartmann6),
        single(
            "stepped-branin",
            SearchSpace::new(vec![float("x1", -5.0, 10.0), float("x2", 0.0, 15.0)]).unwrap(),
            stepped_branin,
        ),
        single(
            "cliff",
            SearchSpace::new(vec![
                Param::new(
                    "depth",
                    Domain::Int {
                        low: 1,
                        high: 15,
                        step: 1,
                        log: false,
                    },
                ),
                float("threshold", 0.0, 0.5),
                float("fraction", 0.01, 0.99),
                log_float("weight", 1e-4, 1.0),
            ])
            .unwrap(),
            cliff,
        ),
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
            objectives: vec![minimize("error")],
            budget: 30,
            ..single("linear-cat", linear_space, linear_cat)
        },
        Problem {
            budget: 30,
            ..single("cat-interact", interact_space, cat_interact)
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
    // `bayes-warp`: `bayes` with its input warping on (off in the registry's `bayes`).
    // `bayes-notr`: `bayes` with its trust region off (on in the registry's `bayes`).
    let strategy: Box<dyn Strategy> = if kind == "bayes-warp" {
        Box::new(BayesStrategy {
            input_warp: true,
            ..BayesStrategy::default()
        })
    } else if kind == "bayes-notr" {
        Box::new(BayesStrategy {
            trust_region: false,
            ..BayesStrategy::default()
        })
    } else {
        registry::build(kind, &registry::StrategyOptions::default()).unwrap()
    };
    let mut history: Vec<Observation> = Vec::new();
    for t in 0..problem.budget {
        let mut ctx = SuggestContext::new(&problem.space, t, seed);
        ctx.objectives = &problem.objectives;
        ctx.max_trials = Some(problem.budget);
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
            .map(|o| o.metrics[&problem.objectives[0].metric])
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
