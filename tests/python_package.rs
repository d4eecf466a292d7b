//! The `python/` package end to end: `pip install ./python`, then its own test suite
//! (`python/tests`: the client over the Unix socket and TCP + token, `Study` ask/tell/optimize,
//! the trial protocol under `quantune run`, the Hugging Face callback) against the real binary;
//! and the torchao QAT recipe (`python -m quantune.recipes.torchao_qat`) on a tiny random
//! 2-layer Llama, every scheme through `quantune run` on CPU.
//!
//! The interpreter is `$QUANTUNE_VENV/bin/python` (the venv `.ci/run` makes, with torch,
//! torchao, transformers, pandas and pytest from `python/ci-requirements.txt`), else a fresh
//! venv of `python3` (standard library only: the torch tests then skip). With
//! `QUANTUNE_REQUIRE_TORCHAO=1` (set by `.ci/run`) a missing torchao fails instead of skipping.

mod common;

use common::{bin, text, Daemon};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required() -> bool {
    std::env::var("QUANTUNE_REQUIRE_TORCHAO").as_deref() == Ok("1")
}

fn runs(python: &Path, code: &str) -> bool {
    Command::new(python)
        .args(["-c", code])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `$QUANTUNE_VENV/bin/python`, when that venv is given.
fn ci_python() -> Option<PathBuf> {
    let venv = std::env::var_os("QUANTUNE_VENV")?;
    let py = PathBuf::from(venv).join("bin/python");
    assert!(
        py.exists(),
        "QUANTUNE_VENV is set but {} does not exist",
        py.display()
    );
    Some(py)
}

/// Installs `python/` into `python`'s environment with pip, as a user would.
fn pip_install(python: &Path) {
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(repo().join("python"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pip install ./python: {}", text(&out));
}

#[test]
fn python_package_installs_and_its_tests_pass_against_a_real_daemon() {
    let venv_dir = tempfile::tempdir().unwrap();
    let python = match ci_python() {
        Some(py) => py,
        None => {
            if !runs(Path::new("python3"), "import venv, ensurepip") {
                assert!(
                    !required(),
                    "QUANTUNE_REQUIRE_TORCHAO=1 but python3 has no venv module"
                );
                eprintln!("skipped: python3 with venv and ensurepip is not installed");
                return;
            }
            let v = venv_dir.path().join("venv");
            let out = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&v)
                .output()
                .unwrap();
            assert!(out.status.success(), "python3 -m venv: {}", text(&out));
            v.join("bin/python")
        }
    };
    pip_install(&python);
    let tests = repo().join("python/tests");
    let mut cmd = Command::new(&python);
    if runs(&python, "import pytest") {
        cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "."]);
    } else {
        cmd.args(["-m", "unittest", "discover", "-v", "-s", "."]);
    }
    let out = cmd
        .current_dir(&tests)
        .env("QUANTUNE_BIN", bin())
        .env_remove("QUANTUNE_URL")
        .env_remove("QUANTUNE_SOCKET")
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success(), "python/tests failed:\n{shown}");
    eprintln!("{shown}");
}

fn recipe_study(python: &Path) -> String {
    format!(
        r#"[study]
name = "torchao-cpu"
seed = 1

[[objective]]
metric = "tpot_ms"
direction = "minimize"

[[objective]]
metric = "eval_loss_delta"
direction = "minimize"

[space.scheme]
type = "categorical"
choices = ["bf16", "int8-dyn-int4-weight", "int4-weight-only", "int8-weight-only", "fp8-rowwise"]

[space.learning_rate]
type = "categorical"
choices = [0.001]

[space.batch_size]
type = "int"
values = [2]

[space.group_size]
type = "int"
values = [32]
when = {{ scheme = ["int8-dyn-int4-weight", "int4-weight-only"] }}

[space.qat_steps]
type = "int"
values = [4]

[strategy]
kind = "grid"

[budget]
max_trials = 5
parallel = 1

[trial]
command = ["{python}", "-m", "quantune.recipes.torchao_qat", "--model", "tiny-llama",
           "--device", "cpu", "--hidden", "64", "--layers", "2", "--heads", "4",
           "--seq-len", "32", "--eval-every", "2", "--eval-batches", "2", "--prompt-len", "16",
           "--decode-tokens", "4", "--warmup", "2", "--repeats", "5"]
env = {{ PYTHONPATH = "{pythonpath}" }}
timeout = "10m"
"#,
        python = python.display(),
        pythonpath = repo().join("python").display(),
    )
}

#[test]
fn torchao_recipe_runs_every_scheme_through_quantune_run_on_cpu() {
    let python = ci_python().unwrap_or_else(|| PathBuf::from("python3"));
    if !runs(&python, "import torch, torchao, transformers") {
        assert!(
            !required(),
            "QUANTUNE_REQUIRE_TORCHAO=1 but {} cannot import torch, torchao and transformers \
             (pip install -r python/ci-requirements.txt)",
            python.display()
        );
        eprintln!("skipped: torch, torchao and transformers are not installed");
        return;
    }
    let mut d = Daemon::prepare(1, "");
    let file = d.write("torchao.toml", &recipe_study(&python));
    let out = Command::new(bin())
        .arg("run")
        .arg(&file)
        .arg("--state")
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Read the stored trials back through a daemon on the same state directory.
    d.spawn();
    let trials = d.trials("torchao-cpu");
    assert_eq!(trials.len(), 5, "{}", text(&out));
    let by_scheme = |s: &str| -> &Value {
        trials
            .iter()
            .find(|t| t["params"]["scheme"] == s)
            .unwrap_or_else(|| panic!("no {s} trial"))
    };
    // group_size exists only for the int4 schemes (a conditional parameter).
    for t in &trials {
        let int4 = ["int8-dyn-int4-weight", "int4-weight-only"]
            .contains(&t["params"]["scheme"].as_str().unwrap());
        assert_eq!(t["params"].get("group_size").is_some(), int4, "{t:#}");
    }
    // What torchao runs on CPU: QAT, conversion and timing, with its tensor type in each layer.
    for (scheme, tensor) in [
        ("bf16", "dense(bfloat16)"),
        ("int8-weight-only", "Int8Tensor"),
        ("int8-dyn-int4-weight", "IntxUnpackedToInt8Tensor"),
    ] {
        let t = by_scheme(scheme);
        assert_eq!(t["state"], "complete", "{scheme}: {t:#}\n{}", text(&out));
        let m = |k: &str| {
            t["metrics"][k]
                .as_f64()
                .unwrap_or_else(|| panic!("{scheme}: no {k}"))
        };
        assert!(
            m("ttft_ms") > 0.0 && m("ttft_ms_p90") >= m("ttft_ms"),
            "{t:#}"
        );
        assert!(
            m("tpot_ms") > 0.0 && m("tpot_ms_p90") >= m("tpot_ms"),
            "{t:#}"
        );
        assert!(m("tpot_ms_spread") >= 0.0, "{t:#}");
        assert!(m("throughput_tok_s") > 0.0, "{t:#}");
        assert!(m("eval_loss_delta").abs() < 1.0, "{t:#}");
        assert!(
            (m("perplexity") - m("eval_loss").exp()).abs() < 1e-6 * m("perplexity"),
            "{t:#}"
        );
        assert!(m("weight_mib") > 0.0, "{t:#}");
        let info = &t["info"];
        let kernels = info["layer_kernels"].as_str().unwrap_or_default();
        assert!(kernels.starts_with(tensor), "{scheme}: {kernels}");
        assert_eq!(info["device"], "cpu");
        assert!(info["torchao"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(info["decode_ops"].as_str().is_some_and(|v| !v.is_empty()));
        // Reports during QAT at steps 2 and 4.
        let detail = d.json(&["curve", "torchao-cpu", &t["trial"].to_string()]);
        let steps: Vec<u64> = detail["reports"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["step"].as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(steps, vec![2, 4], "{scheme}: {detail:#}");
    }
    // The quantized schemes weigh less than bf16 (torchao keeps the int4 values of
    // int8-dyn-int4-weight unpacked, one per int8, so it is not smaller than int8 here).
    let mib = |s: &str| by_scheme(s)["metrics"]["weight_mib"].as_f64().unwrap();
    assert!(mib("int8-weight-only") < mib("bf16"));
    assert!(mib("int8-dyn-int4-weight") < mib("bf16"));
    // What it cannot run on CPU is infeasible with torchao's reason, and nothing is timed.
    for scheme in ["int4-weight-only", "fp8-rowwise"] {
        let t = by_scheme(scheme);
        assert_eq!(t["state"], "infeasible", "{scheme}: {t:#}");
        let reason = t["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("{scheme} cannot run on cpu")),
            "{scheme}: {reason}"
        );
        assert!(t["metrics"].get("tpot_ms").is_none(), "{t:#}");
    }
    d.stop();
}
