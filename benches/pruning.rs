//! Pruning benchmark (`cargo bench --bench pruning`): the same study — 36 trials of a QAT
//! surrogate with realistic learning curves (benches/fixtures/surrogate.sh, 27 steps each),
//! scrambled-Sobol suggestions so both runs try the same configurations — with and without
//! pruning, through the real daemon. Prints total trial-seconds, wall time and the best result.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Daemon;
use std::path::Path;
use std::time::{Duration, Instant};

fn study(name: &str, pruner: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures/surrogate.sh");
    format!(
        r#"[study]
name = "{name}"
seed = 11

[[objective]]
metric = "eval_loss"
direction = "minimize"

[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-1
log = true

[space.batch_size]
type = "int"
values = [8, 16, 32, 64, 128]

[strategy]
kind = "sobol"

[budget]
max_trials = 36
parallel = 2

[trial]
command = ["sh", "{}", "{{learning_rate}}", "{{batch_size}}"]
timeout = "2m"

[pruner]
{pruner}
"#,
        script.display()
    )
}

struct Outcome {
    trial_seconds: f64,
    wall: f64,
    best: f64,
    best_trial: u64,
    pruned: usize,
}

fn run(d: &Daemon, name: &str, pruner: &str) -> Outcome {
    let f = d.write(&format!("{name}.toml"), &study(name, pruner));
    let t0 = Instant::now();
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    assert_eq!(d.wait_study(name, Duration::from_secs(600)), "completed");
    let wall = t0.elapsed().as_secs_f64();
    let trials = d.trials(name);
    let trial_seconds = trials.iter().filter_map(|t| t["duration_s"].as_f64()).sum();
    let (best_trial, best) = trials
        .iter()
        .filter(|t| t["state"] == "complete")
        .map(|t| {
            (
                t["trial"].as_u64().unwrap(),
                t["metrics"]["eval_loss"].as_f64().unwrap(),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a complete trial");
    let pruned = common::count_state(&trials, "pruned");
    Outcome {
        trial_seconds,
        wall,
        best,
        best_trial,
        pruned,
    }
}

fn main() {
    let d = Daemon::start(2, "");
    let rows = [
        ("none", "kind = \"none\""),
        (
            "median",
            "kind = \"median\"\nmin_trials = 5\nwarmup_steps = 3",
        ),
        (
            "asha",
            "kind = \"asha\"\nmin_resource = 1\nreduction_factor = 3\nmax_resource = 27",
        ),
    ];
    println!("| pruner | trial-seconds | wall (s) | pruned | best eval_loss (trial) | trial-seconds saved |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut base = None;
    for (label, body) in rows {
        let o = run(&d, label, body);
        let base_ts = *base.get_or_insert(o.trial_seconds);
        println!(
            "| {label} | {:.1} | {:.1} | {} | {:.4} ({}) | {:.2}× |",
            o.trial_seconds,
            o.wall,
            o.pruned,
            o.best,
            o.best_trial,
            base_ts / o.trial_seconds
        );
    }
    println!("\nsurrogate noise: ±0.01 per trial");
}
