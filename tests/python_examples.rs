//! The Python side of the examples: `examples/quantune_trial.py` speaks the trial protocol, and
//! `examples/pytorch/qat_finetune.py` runs as a real trial under `quantune run` on CPU (tiny
//! model, few steps). The PyTorch test needs `torch` in the venv `.ci/run` makes
//! (`$QUANTUNE_VENV`: torch 2.15 and torchao from PyPI, python/ci-requirements.txt), in
//! `python3`, or in Debian's `/usr/bin/python3` (`apt-get install python3-torch`, torch 1.13).
//! Without it the test says so and skips, unless `QUANTUNE_REQUIRE_TORCH=1` (set by `.ci/run`)
//! makes that a failure.

mod common;

use common::{bin, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `python` runs `code` successfully.
fn runs(python: &str, code: &str) -> bool {
    Command::new(python)
        .args(["-c", code])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn python_ok(code: &str) -> bool {
    runs("python3", code)
}

#[test]
fn trial_helper_speaks_the_protocol() {
    if !python_ok("import json") {
        eprintln!("skipped: no python3 on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.jsonl");
    let script = r#"
import quantune_trial as qt
p = qt.params({"batch_size": 1, "extra": "kept"})
assert p == {"learning_rate": 0.30000000000000004, "batch_size": 8, "quantization": "int4", "extra": "kept"}, p
assert qt.trial() == 3 and qt.study() == "s"
qt.report(10, eval_loss=2.5)
for bad in (lambda: qt.report(-1, x=1), lambda: qt.final(step=1), lambda: qt.final(x=float("nan"))):
    try:
        bad()
        raise SystemExit("accepted a bad line")
    except ValueError:
        pass
qt.final(latency_ms=1.25, gpu="H100", kernel=3)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .current_dir(repo().join("examples"))
        .env(
            "QUANTUNE_PARAMS",
            r#"{"learning_rate": 0.30000000000000004, "batch_size": 8, "quantization": "int4"}"#,
        )
        .env("QUANTUNE_TRIAL", "3")
        .env("QUANTUNE_STUDY", "s")
        .env("QUANTUNE_METRICS_FILE", &metrics)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["step"], 10);
    assert_eq!(lines[0]["eval_loss"], 2.5);
    assert_eq!(lines[1]["latency_ms"], 1.25);
    assert_eq!(lines[1]["gpu"], "H100");
    assert_eq!(lines[1]["kernel"], 3.0);
}

/// The first interpreter that can import torch: the venv `.ci/run` makes (`$QUANTUNE_VENV`,
/// current torch and torchao), `python3` on the PATH, then Debian's.
fn python_with_torch() -> Option<String> {
    let venv = std::env::var("QUANTUNE_VENV")
        .ok()
        .map(|v| format!("{v}/bin/python"));
    venv.into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()])
        .find(|py| runs(py, "import torch"))
}

fn tiny_pytorch_study(python: &str, script: &Path) -> String {
    format!(
        r#"[study]
name = "torch-tiny"
seed = 1

[[objective]]
metric = "latency_ms"
direction = "minimize"

[[constraint]]
metric = "eval_loss_delta"
max = 10.0

[space.learning_rate]
type = "categorical"
choices = [0.001]

[space.batch_size]
type = "int"
values = [2]

[space.quantization]
type = "categorical"
choices = ["f32", "int8", "int4"]

[strategy]
kind = "grid"

[budget]
max_trials = 3
parallel = 1

[trial]
command = ["{python}", "{script}", "--model", "tiny", "--device", "cpu", "--steps", "4",
           "--eval-every", "2", "--seq-len", "32", "--eval-tokens", "256", "--bench-tokens", "4",
           "--bench-repeats", "5", "--warmup", "1"]
timeout = "5m"
"#,
        script = script.display()
    )
}

#[test]
fn pytorch_qat_example_runs_as_a_trial_on_cpu() {
    let script = repo().join("examples/pytorch/qat_finetune.py");
    if !python_ok("import argparse") {
        eprintln!("skipped: no python3 on this machine");
        return;
    }
    let Some(python) = python_with_torch() else {
        // Without torch the script must say so plainly (exit 2), not crash.
        let out = Command::new("python3").arg(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("PyTorch is not installed"),
            "{}",
            text(&out)
        );
        assert!(
            std::env::var("QUANTUNE_REQUIRE_TORCH").as_deref() != Ok("1"),
            "QUANTUNE_REQUIRE_TORCH=1 but no python3 here imports torch (apt-get install python3-torch)"
        );
        eprintln!(
            "skipped: PyTorch is not installed (apt-get install python3-torch), so examples/pytorch/qat_finetune.py was not run"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("torch.toml");
    std::fs::write(&file, tiny_pytorch_study(&python, &script)).unwrap();
    let out = Command::new(bin())
        .arg("run")
        .arg(&file)
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("completed"), "{shown}");
    // The leaderboard (stdout): three complete trials.
    let board = String::from_utf8_lossy(&out.stdout);
    let complete = board
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == "complete"))
        .count();
    assert_eq!(complete, 3, "{shown}");
    // Each trial's final line carried sane measurements.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let finished: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" complete "))
        .collect();
    assert_eq!(finished.len(), 3, "{shown}");
    for line in finished {
        let metric = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        assert!(metric("latency_ms") > 0.0, "{line}");
        assert!(metric("latency_ms_p90") >= metric("latency_ms"), "{line}");
        assert!(metric("throughput_tok_s") > 0.0, "{line}");
        assert!(metric("eval_loss").is_finite(), "{line}");
        assert!(metric("weight_mib") > 0.0, "{line}");
    }
}
