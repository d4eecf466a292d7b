//! Early stopping through the real daemon: median and ASHA stop exactly the trials their rules
//! name on scripted learning curves, the quality gate stops a trial before its final line, and
//! an external trial learns it was pruned from `quantune report`.

mod common;

use common::{fixture, Daemon};
use serde_json::Value;
use std::time::Duration;

/// A study over x in [-5, 5] (grid, so the values are spread) running tests/fixtures/curve.sh
/// one trial at a time, with the given `[pruner]` body.
fn curve_study(name: &str, trials: u64, pruner: &str, extra: &str) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 3

[[objective]]
metric = "loss"
direction = "minimize"
{extra}
[space.x]
type = "float"
low = -5.0
high = 5.0

[space.q]
type = "categorical"
choices = ["a"]

[strategy]
kind = "grid"
grid_points = {trials}

[budget]
max_trials = {trials}
parallel = 1

[trial]
command = ["sh", "{}", "{{x}}", "{{q}}"]
timeout = "30s"

[pruner]
{pruner}
"#,
        fixture("curve.sh").display()
    )
}

fn run_study(d: &Daemon, name: &str, toml: &str) -> Vec<Value> {
    let f = d.write(&format!("{name}.toml"), toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(
        d.wait_study(name, Duration::from_secs(120)),
        "completed",
        "{}",
        d.log()
    );
    d.trials(name)
}

fn x(t: &Value) -> f64 {
    t["params"]["x"].as_f64().unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

#[test]
fn median_pruner_stops_exactly_the_trials_above_the_median() {
    let d = Daemon::start(1, "");
    let trials = run_study(
        &d,
        "med",
        &curve_study("med", 8, "kind = \"median\"\nmin_trials = 2", ""),
    );
    assert_eq!(trials.len(), 8);
    // With loss = x + 10/step, comparing at any step is comparing x.
    let mut complete: Vec<f64> = Vec::new();
    for t in &trials {
        let state = t["state"].as_str().unwrap();
        let expect_pruned = complete.len() >= 2 && x(t) > median(&mut complete.clone());
        assert_eq!(
            state == "pruned",
            expect_pruned,
            "trial {} (x = {}) is {state}; complete before: {complete:?}",
            t["trial"],
            x(t)
        );
        if state == "complete" {
            complete.push(x(t));
        } else {
            assert!(t["reason"].as_str().unwrap().contains("median"), "{t}");
            assert!(
                t["metrics"].as_object().unwrap().is_empty(),
                "a pruned trial has no final metrics"
            );
        }
    }
    assert!(
        trials.iter().any(|t| t["state"] == "pruned"),
        "the scripted curves must prune something"
    );
    // The pruned trials keep their learning curves.
    let pruned = trials.iter().find(|t| t["state"] == "pruned").unwrap();
    let detail = d.json(&["curve", "med", &pruned["trial"].to_string()]);
    assert!(
        !detail["reports"].as_array().unwrap().is_empty(),
        "{detail}"
    );
}

#[test]
fn asha_stops_exactly_the_trials_outside_the_top_of_each_rung() {
    let d = Daemon::start(1, "");
    let toml = curve_study(
        "asha",
        8,
        "kind = \"asha\"\nmin_resource = 1\nreduction_factor = 2\nmax_resource = 8",
        "",
    );
    let trials = run_study(&d, "asha", &toml);
    // Simulate the rule: rungs at steps 1, 2, 4; a trial reaching a rung goes on only if its x
    // is among the best max(1, n/2) of the n trials that reached it (itself included).
    let mut reached: Vec<(f64, u64)> = Vec::new(); // (x, highest rung reached)
    for t in &trials {
        let xi = x(t);
        let mut pruned_at = None;
        for rung in [1u64, 2, 4] {
            let mut comp: Vec<f64> = reached
                .iter()
                .filter(|(_, r)| *r >= rung)
                .map(|(v, _)| *v)
                .collect();
            comp.push(xi);
            comp.sort_by(f64::total_cmp);
            let keep = (comp.len() / 2).max(1);
            if xi > comp[keep - 1] {
                pruned_at = Some(rung);
                break;
            }
        }
        let state = t["state"].as_str().unwrap();
        assert_eq!(
            state == "pruned",
            pruned_at.is_some(),
            "trial {} (x = {xi}) is {state}; expected pruned at {pruned_at:?}",
            t["trial"]
        );
        reached.push((xi, pruned_at.unwrap_or(u64::MAX)));
    }
    assert!(trials.iter().any(|t| t["state"] == "pruned"));
    assert!(trials.iter().any(|t| t["state"] == "complete"));
}

#[test]
fn quality_gate_stops_a_trial_before_its_final_line() {
    let d = Daemon::start(1, "");
    let toml = curve_study(
        "gate",
        2,
        "constraint_grace = 0.01",
        "[[constraint]]\nmetric = \"delta\"\nmax = 0.05\n",
    )
    .replace("choices = [\"a\"]", "choices = [\"a\", \"b\"]");
    let trials = run_study(&d, "gate", &toml);
    assert_eq!(trials.len(), 2);
    for t in &trials {
        let q = t["params"]["q"].as_str().unwrap();
        if q == "b" {
            assert_eq!(t["state"], "pruned", "{t}");
            let reason = t["reason"].as_str().unwrap();
            assert!(
                reason.contains("quality gate") && reason.contains("delta"),
                "{reason}"
            );
            assert!(
                t["metrics"].as_object().unwrap().is_empty(),
                "stopped before the final line: {t}"
            );
        } else {
            assert_eq!(t["state"], "complete", "{t}");
        }
    }
}

#[test]
fn external_trial_is_told_to_prune() {
    let d = Daemon::start(1, "");
    let toml = r#"[study]
name = "ext"
seed = 1
[[objective]]
metric = "loss"
direction = "minimize"
[space.x]
type = "float"
low = 0.0
high = 1.0
[budget]
max_trials = 3
[trial]
workload = "external"
[pruner]
kind = "median"
min_trials = 1
"#;
    let f = d.write("ext.toml", toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    let ask = |want: u64| {
        let out = d.cli(&["ask", "ext"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", common::text(&out)));
        assert_eq!(v["trial"], want);
    };
    let report = |n: &str, step: &str, loss: f64| -> Value {
        let out = d.cli(&[
            "report",
            "ext",
            n,
            "--step",
            step,
            "--metrics",
            &format!("{{\"loss\": {loss}}}"),
        ]);
        assert!(out.status.success(), "{}", common::text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    ask(0);
    assert_eq!(report("0", "1", 1.0)["prune"], false);
    assert!(d
        .cli(&["tell", "ext", "0", "--metrics", "{\"loss\": 0.5}"])
        .status
        .success());
    ask(1);
    assert_eq!(
        report("1", "1", 0.8)["prune"],
        false,
        "better than the median goes on"
    );
    assert_eq!(report("1", "2", 0.9)["prune"], false);
    assert!(d
        .cli(&["tell", "ext", "1", "--metrics", "{\"loss\": 0.4}"])
        .status
        .success());
    ask(2);
    assert_eq!(
        report("2", "1", 5.0)["prune"],
        true,
        "worse than the median of 2 complete trials"
    );
    let t = &d.trials("ext")[2];
    assert_eq!(t["state"], "pruned");
    let out = d.cli(&["tell", "ext", "2", "--metrics", "{\"loss\": 0.1}"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "telling a pruned trial is refused"
    );
    assert!(
        common::text(&out).contains("pruned"),
        "{}",
        common::text(&out)
    );
    assert_eq!(d.wait_study("ext", Duration::from_secs(10)), "completed");
}

#[test]
fn wall_budget_with_cancel_stops_running_trials() {
    let d = Daemon::start(2, "");
    let toml = curve_study("wall", 8, "kind = \"none\"", "")
        .replace(
            "parallel = 1",
            "parallel = 2\nmax_wall = \"2s\"\non_exhausted = \"cancel\"",
        )
        .replace(
            "timeout = \"30s\"",
            "timeout = \"30s\"\nenv = { SLEEP = \"1\" }",
        );
    let trials = run_study(&d, "wall", &toml);
    let s = d.json(&["status", "wall"]);
    assert_eq!(s["message"], "budget.max_wall reached", "{s}");
    assert!(
        trials.len() < 8,
        "no new trials after the budget: {}",
        trials.len()
    );
    let cancelled: Vec<&Value> = trials
        .iter()
        .filter(|t| t["state"] == "cancelled")
        .collect();
    assert!(
        !cancelled.is_empty(),
        "running trials are cancelled: {trials:?}"
    );
    for t in cancelled {
        assert!(
            t["reason"].as_str().unwrap().contains("budget.max_wall"),
            "{t}"
        );
    }
    assert!(s["budget"]["wall_s"].as_f64().unwrap() >= 2.0, "{s}");
}

#[test]
fn gpu_hour_budget_counts_attempt_time() {
    let d = Daemon::start(1, "");
    // An external study may ask for GPUs (the client runs the trial); 0.0003 h is about 1.1 s.
    let toml = r#"[study]
name = "gpuh"
[[objective]]
metric = "loss"
direction = "minimize"
[space.x]
type = "float"
low = 0.0
high = 1.0
[budget]
max_trials = 10
max_gpu_hours = 0.0003
[trial]
workload = "external"
gpus = 2
"#;
    let f = d.write("gpuh.toml", toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    assert!(d.cli(&["ask", "gpuh"]).status.success());
    std::thread::sleep(Duration::from_millis(700));
    assert!(d
        .cli(&["tell", "gpuh", "0", "--metrics", "{\"loss\": 1}"])
        .status
        .success());
    // 2 GPUs × 0.7 s ≈ 0.00039 h > 0.0003 h: the study is done.
    let s = d.json(&["status", "gpuh"]);
    assert_eq!(s["state"], "completed", "{s}");
    assert_eq!(s["message"], "budget.max_gpu_hours reached", "{s}");
    assert!(s["budget"]["gpu_hours"].as_f64().unwrap() > 0.0003, "{s}");
    assert_eq!(d.cli(&["ask", "gpuh"]).status.code(), Some(1));
}
