//! Suggestion latency of every strategy: 10, 100 and 1000 finished trials plus 4 pending, in a
//! 3-parameter and a 10-parameter space. Prints a markdown table (median of repeated calls).
//! The row `bayes (spread)` is `bayes` on trials that also report `loss_spread`, the measured
//! spread its heteroscedastic model reads.
//!
//! `cargo bench -p quantune-strategies --bench suggest` (add `-- --quick` for fewer repeats,
//! `--only bayes` for one strategy, `--trials 100` for one history size).

use quantune_strategies::{
    registry, Direction, Domain, Objective, Observation, Outcome, Param, ParamValue, Params,
    SearchSpace, SuggestContext,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The QAT space of the README: learning rate, batch size, quantization format.
fn space3() -> SearchSpace {
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
                values: vec![8, 16, 32, 64, 128],
            },
        ),
        Param::new(
            "quantization",
            Domain::Categorical {
                choices: ["bf16", "int8", "int4"]
                    .iter()
                    .map(|s| ParamValue::Str(s.to_string()))
                    .collect(),
            },
        ),
    ])
    .unwrap()
}

/// Seven floats, two integers and a categorical.
fn space10() -> SearchSpace {
    let mut params: Vec<Param> = (0..7)
        .map(|i| {
            Param::new(
                format!("x{i}"),
                if i == 0 {
                    Domain::Float {
                        low: 1e-5,
                        high: 1e-1,
                        log: true,
                    }
                } else {
                    Domain::Float {
                        low: -5.0,
                        high: 5.0,
                        log: false,
                    }
                },
            )
        })
        .collect();
    params.push(Param::new(
        "layers",
        Domain::Int {
            low: 1,
            high: 24,
            step: 1,
            log: false,
        },
    ));
    params.push(Param::new(
        "warmup",
        Domain::Int {
            low: 0,
            high: 1000,
            step: 50,
            log: false,
        },
    ));
    params.push(Param::new(
        "format",
        Domain::Categorical {
            choices: ["bf16", "int8", "int4", "nf4"]
                .iter()
                .map(|s| ParamValue::Str(s.to_string()))
                .collect(),
        },
    ));
    SearchSpace::new(params).unwrap()
}

/// A smooth loss over the unit cube.
fn loss(space: &SearchSpace, p: &Params) -> f64 {
    let u = space.to_unit(p).unwrap();
    u.iter()
        .enumerate()
        .map(|(i, v)| (v - 0.3 - 0.05 * i as f64).powi(2) + 0.1 * (7.0 * v).sin())
        .sum()
}

fn history(space: &SearchSpace, n: u64, spread: bool) -> (Vec<Observation>, Vec<Params>) {
    let random = registry::build("random", &registry::StrategyOptions::default()).unwrap();
    let point = |t: u64| random.suggest(&SuggestContext::new(space, t, 1)).unwrap();
    let history = (0..n)
        .map(|t| {
            let params = point(t);
            let value = loss(space, &params);
            let mut metrics: std::collections::BTreeMap<String, f64> =
                [("loss".to_string(), value)].into();
            if spread {
                let u0 = space.to_unit(&params).unwrap()[0];
                metrics.insert("loss_spread".to_string(), 0.05 + 0.2 * u0);
            }
            Observation {
                number: t,
                outcome: Outcome::Complete,
                metrics: Arc::new(metrics),
                params: Arc::new(params),
            }
        })
        .collect();
    let pending = (n..n + 4).map(point).collect();
    (history, pending)
}

/// CPU time of this thread: unlike wall time, not inflated when other processes share the
/// cores.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    // `--trials N`: only that history size (the other cells print "-"), for profiling.
    let trials_only = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    let budget = Duration::from_millis(if quick { 150 } else { 600 });
    let objectives = [Objective {
        metric: "loss".into(),
        direction: Direction::Minimize,
    }];
    let options = registry::StrategyOptions::default();
    println!("Median wall time per suggestion (median thread CPU time in parentheses).\n");
    println!("| strategy | params | 10 trials | 100 trials | 1000 trials |");
    println!("| --- | --- | --- | --- | --- |");
    for (label, kind, spread) in [
        ("random", "random", false),
        ("sobol", "sobol", false),
        ("tpe", "tpe", false),
        ("bayes", "bayes", false),
        ("bayes (spread)", "bayes", true),
    ] {
        if only.as_deref().is_some_and(|o| o != kind) {
            continue;
        }
        let strategy = registry::build(kind, &options).unwrap();
        for (dims, space) in [(3, space3()), (10, space10())] {
            let mut cells = Vec::new();
            for n in [10u64, 100, 1000] {
                if trials_only.is_some_and(|t| t != n) {
                    cells.push("-".to_string());
                    continue;
                }
                let (history, pending) = history(&space, n, spread);
                let mut ctx = SuggestContext::new(&space, n + 4, 7);
                ctx.objectives = &objectives;
                ctx.history = &history;
                ctx.pending = &pending;
                let mut wall = Vec::new();
                let mut cpu = Vec::new();
                let start = Instant::now();
                while wall.len() < 3 || (start.elapsed() < budget && wall.len() < 10_000) {
                    let (t, c) = (Instant::now(), thread_cpu());
                    black_box(strategy.suggest(black_box(&ctx)).unwrap());
                    cpu.push(thread_cpu().saturating_sub(c));
                    wall.push(t.elapsed());
                }
                wall.sort();
                cpu.sort();
                cells.push(format!(
                    "{} ({})",
                    fmt(wall[wall.len() / 2]),
                    fmt(cpu[cpu.len() / 2])
                ));
            }
            println!(
                "| {label} | {dims} | {} | {} | {} |",
                cells[0], cells[1], cells[2]
            );
        }
    }
}
