//! The built-in workload `builtin:qat-bench`, end to end through the real binary: a tiny study
//! run with `quantune run` (base model trained once and cached in the state directory, trials
//! fine-tuned, converted, benchmarked, ranked), its metrics checked for sense; and one trial run
//! twice by hand to check that training is deterministic for a seed.

mod common;

use common::{bin, text, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `[trial.qat]` of a model small enough for the debug-build test suite.
const TINY: &str = r#"
[trial.qat]
layers = 1
seq_len = 32
steps = 4
eval_every = 2
base_steps = 6
eval_tokens = 256
bench_tokens = 8
bench_repeats = 5
warmup = 1
"#;

fn tiny_study(name: &str) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 7

[[objective]]
metric = "latency_ms"
direction = "minimize"

[[objective]]
metric = "throughput_tok_s"
direction = "maximize"

[[constraint]]
metric = "eval_loss_delta"
max = 10.0

[space.learning_rate]
type = "categorical"
choices = [0.002]

[space.batch_size]
type = "int"
values = [3]

[space.quantization]
type = "categorical"
choices = ["f32", "f16", "int8", "int4"]

[strategy]
kind = "grid"

[budget]
max_trials = 4
parallel = 2

[trial]
workload = "builtin:qat-bench"
timeout = "5m"
{TINY}"#
    )
}

fn metric(t: &Value, k: &str) -> f64 {
    t["metrics"][k]
        .as_f64()
        .unwrap_or_else(|| panic!("trial {} lacks metric {k}: {t}", t["trial"]))
}

#[test]
fn tiny_builtin_study_runs_end_to_end() {
    let mut d = Daemon::prepare(2, "");
    let file = d.write("tiny.toml", &tiny_study("tiny-qat"));
    let out = Command::new(bin())
        .args(["validate"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = Command::new(bin())
        .arg("run")
        .arg(&file)
        .arg("--state")
        .arg(d.state_dir())
        .args(["--cpu-slots", "2"])
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("completed"), "{shown}");

    // The base model was trained once and cached, with its checksum beside it.
    let cache = d.state_dir().join("cache/qat-bench");
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".safetensors")).count(),
        1,
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".json")), "{names:?}");

    d.spawn();
    let trials = d.trials("tiny-qat");
    assert_eq!(trials.len(), 4);
    let mut by_format = std::collections::BTreeMap::new();
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        for k in [
            "latency_ms",
            "latency_ms_p90",
            "throughput_tok_s",
            "weight_mib",
        ] {
            assert!(metric(t, k) > 0.0, "{k}: {t}");
        }
        assert!(
            metric(t, "latency_ms_p90") >= metric(t, "latency_ms") * 0.5,
            "{t}"
        );
        assert!(metric(t, "latency_ms_spread") >= 0.0, "{t}");
        let loss = metric(t, "eval_loss");
        assert!(loss > 0.0 && loss < 8.0, "eval loss {loss}: {t}");
        let delta = metric(t, "eval_loss_delta");
        assert!(
            (loss - metric(t, "base_eval_loss") - delta).abs() < 1e-9,
            "{t}"
        );
        assert!(t["info"]["host"].as_str().unwrap().contains("cores"), "{t}");
        assert!(t["info"]["quantune_version"].is_string(), "{t}");
        let format = t["params"]["quantization"].as_str().unwrap().to_string();
        by_format.insert(format, metric(t, "weight_mib"));
        // Intermediate reports every eval_every = 2 steps.
        let n = t["trial"].as_u64().unwrap();
        let lines = std::fs::read_to_string(
            d.state_dir()
                .join(format!("trials/tiny-qat/{n}/metrics.1.jsonl")),
        )
        .unwrap();
        let steps: Vec<u64> = lines
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["step"].as_u64())
            .collect();
        assert_eq!(steps, vec![2, 4], "{lines}");
    }
    // Smaller formats store fewer bytes.
    assert!(by_format["int4"] < by_format["int8"], "{by_format:?}");
    assert!(by_format["int8"] < by_format["f16"], "{by_format:?}");
    assert!(by_format["f16"] < by_format["f32"], "{by_format:?}");
    let board = d.leaderboard("tiny-qat");
    assert_eq!(board.len(), 4);
    assert!(board[0]["rank"].is_number(), "{:?}", board[0]);
}

/// Runs one trial by hand; returns its metrics lines.
fn run_trial(cache: &Path, metrics: &Path, quantization: &str) -> Vec<Value> {
    let _ = std::fs::remove_file(metrics);
    let mut cmd = Command::new(bin());
    cmd.args([
        "qat-bench",
        "--learning-rate",
        "0.002",
        "--batch-size",
        "3",
        "--quantization",
        quantization,
        "--seed",
        "11",
        "--layers",
        "1",
        "--seq-len",
        "32",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--base-steps",
        "3",
        "--eval-tokens",
        "128",
        "--bench-tokens",
        "4",
        "--bench-repeats",
        "5",
        "--warmup",
        "1",
    ])
    .arg("--cache-dir")
    .arg(cache)
    .arg("--metrics-file")
    .arg(metrics);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_trial_is_deterministic_for_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let metrics = dir.path().join("m.jsonl");
    // The first run trains the base model, the second loads it from the cache: the results
    // agree all the same.
    let a = run_trial(&cache, &metrics, "int8");
    let b = run_trial(&cache, &metrics, "int8");
    assert_eq!(a.len(), 3, "{a:?}");
    for (x, y) in a.iter().zip(&b) {
        for k in [
            "step",
            "eval_loss",
            "train_loss",
            "eval_loss_delta",
            "qat_eval_loss",
        ] {
            assert_eq!(x.get(k), y.get(k), "{k}: {x} vs {y}");
        }
    }
    let last = a.last().unwrap();
    assert_eq!(last["weight_format"], "Q8_0");
    for k in ["latency_ms", "throughput_tok_s", "eval_loss", "weight_mib"] {
        assert!(last[k].as_f64().unwrap() > 0.0, "{k}: {last}");
    }
}

#[test]
fn bad_trial_arguments_are_refused() {
    let out = Command::new(bin())
        .args([
            "qat-bench",
            "--learning-rate",
            "0.001",
            "--batch-size",
            "2",
            "--quantization",
            "fp8",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("allowed: f32, f16, bf16, int8, int4"),
        "{}",
        text(&out)
    );
}
