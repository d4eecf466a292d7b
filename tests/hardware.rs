//! Hardware-aware choices and the measurement record, through the real binary on a machine
//! without GPUs: a choice that needs a GPU (`requires`) is never proposed on CPU slots,
//! `validate` warns about it, `enqueue` refuses it, and every local trial stores the host and
//! quantune's version. (The GPU side — an H100 meeting `fp8`'s requirement, `gpu_memory`
//! making a trial wait — is checked on a real GPU: docs/BENCHMARKS.md.)

mod common;

use common::{bin, objective_command, text, Daemon};
use std::process::Command;
use std::time::Duration;

fn study(name: &str, choices: &str, max_trials: u64, strategy: &str) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 3

[[objective]]
metric = "loss"
direction = "minimize"

[space.x]
type = "float"
low = -5.0
high = 5.0

[space.q]
type = "categorical"
choices = {choices}
requires = {{ fp8 = {{ compute_capability = "8.9" }} }}

[strategy]
kind = "{strategy}"
initial_trials = 4

[budget]
max_trials = {max_trials}
parallel = 2

[trial]
command = {command}
timeout = "30s"
"#,
        command = objective_command()
    )
}

#[test]
fn a_choice_no_worker_can_run_is_never_proposed_and_trials_record_the_host() {
    let d = Daemon::start(2, "");
    let file = d.write("hw.toml", &study("hw", r#"["a", "b", "fp8"]"#, 12, "bayes"));

    let v = Command::new(bin())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));
    let warned = String::from_utf8_lossy(&v.stderr);
    assert!(
        warned.contains("warning: ")
            && warned.contains("space.q.requires.fp8: trials run on CPU slots (trial.gpus = 0), so q = fp8 needs compute capability >= 8.9: it will never be proposed"),
        "{warned}"
    );

    d.json(&["submit", file.to_str().unwrap()]);
    // Asking for the choice by hand is refused with the reason.
    let e = d.cli(&["enqueue", "hw", "--params", r#"{"x": 1.0, "q": "fp8"}"#]);
    assert!(!e.status.success());
    let msg = text(&e);
    assert!(
        msg.contains("q = fp8 needs compute capability >= 8.9, and no slot of this daemon can run it (GPUs: none)"),
        "{msg}"
    );
    assert_eq!(d.wait_study("hw", Duration::from_secs(120)), "completed");

    let trials = d.trials("hw");
    assert_eq!(trials.len(), 12);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        assert_ne!(t["params"]["q"], "fp8", "{t}");
        let host = t["info"]["host"].as_str().unwrap_or_default();
        assert!(host.ends_with(" cores"), "{t}");
        assert_eq!(t["info"]["quantune_version"], env!("CARGO_PKG_VERSION"));
        assert!(t["info"].get("gpu").is_none(), "a CPU slot has no GPU: {t}");
    }
    // Both runnable choices were explored.
    for q in ["a", "b"] {
        assert!(
            trials.iter().any(|t| t["params"]["q"] == q),
            "{q} never tried"
        );
    }
}

#[test]
fn a_study_whose_every_choice_needs_a_gpu_fails_with_the_reason() {
    let d = Daemon::start(1, "");
    let file = d.write("only.toml", &study("only", r#"["fp8"]"#, 3, "random"));
    d.json(&["submit", file.to_str().unwrap()]);
    assert_eq!(d.wait_study("only", Duration::from_secs(30)), "failed");
    let s = d.json(&["status", "only"]);
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("q: no choice can run on this worker (all of fp8 are excluded): q = fp8 needs compute capability >= 8.9 (GPUs of this daemon: none)"),
        "{s}"
    );
    assert_eq!(s["trials"], 0, "{s}");
}
