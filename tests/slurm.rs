//! The Slurm executor against a real single-node Slurm (tests/slurm/start.sh: slurmctld,
//! slurmd and munged without systemd, two fake GPUs). `.ci/run` installs and starts it and sets
//! QUANTUNE_REQUIRE_SLURM=1; elsewhere these tests skip when Slurm is not installed.

mod common;

use common::{fixture, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Starts (or finds) the test cluster once; `None` when Slurm is not installed here.
fn slurm() -> Option<&'static str> {
    static CONF: OnceLock<Option<String>> = OnceLock::new();
    CONF.get_or_init(|| {
        let required = std::env::var("QUANTUNE_REQUIRE_SLURM").is_ok_and(|v| v == "1");
        if Command::new("sbatch").arg("--version").output().is_err() {
            assert!(!required, "QUANTUNE_REQUIRE_SLURM=1 but sbatch is not installed");
            eprintln!("SKIPPED: Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)");
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/start.sh");
        let out = Command::new("bash").arg(script).output().expect("run tests/slurm/start.sh");
        assert!(out.status.success(), "cannot start Slurm: {}", common::text(&out));
        let conf = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // The daemon and every sbatch/squeue it runs read this.
        std::env::set_var("SLURM_CONF", &conf);
        Some(conf)
    })
    .as_deref()
}

fn daemon() -> Daemon {
    let shared = tempfile::tempdir().unwrap().keep();
    Daemon::start(
        2,
        &format!(
            "[executor.slurm]\nshared_dir = {:?}\npoll_interval = \"1s\"\n",
            shared
        ),
    )
}

fn study(name: &str, trials: u64, parallel: u64, trial_extra: &str) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 5

[[objective]]
metric = "loss"
direction = "minimize"

[space.x]
type = "float"
low = -5.0
high = 5.0

[space.q]
type = "categorical"
choices = ["a"]

[budget]
max_trials = {trials}
parallel = {parallel}

[trial]
executor = "slurm"
command = ["sh", "{}", "{{x}}", "{{q}}"]
timeout = "10m"
{trial_extra}
"#,
        fixture("objective.sh").display()
    )
}

fn submit(d: &Daemon, name: &str, toml: &str) {
    let f = d.write(&format!("{name}.toml"), toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out));
}

fn squeue_ids() -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn wait_until(
    d: &Daemon,
    what: &str,
    secs: u64,
    mut f: impl FnMut(&[Value]) -> bool,
    study: &str,
) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let trials = d.trials(study);
        if f(&trials) {
            return trials;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}: {trials:?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn study_completes_through_slurm_with_job_ids() {
    if slurm().is_none() {
        return;
    }
    let d = daemon();
    submit(&d, "sl-ok", &study("sl-ok", 4, 2, ""));
    assert_eq!(
        d.wait_study("sl-ok", Duration::from_secs(120)),
        "completed",
        "{}",
        d.log()
    );
    let trials = d.trials("sl-ok");
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["executor"], "slurm");
        assert!(
            t["job_id"]
                .as_str()
                .is_some_and(|j| j.parse::<u64>().is_ok()),
            "{t}"
        );
        let x = t["params"]["x"].as_f64().unwrap();
        assert!((t["metrics"]["loss"].as_f64().unwrap() - (x - 1.0).powi(2)).abs() < 1e-9);
    }
}

#[test]
fn failing_job_is_retried_then_failed() {
    if slurm().is_none() {
        return;
    }
    let d = daemon();
    submit(
        &d,
        "sl-fail",
        &study("sl-fail", 1, 1, "retries = 1\nenv = { MODE = \"fail\" }"),
    );
    d.wait_study("sl-fail", Duration::from_secs(120));
    let t = &d.trials("sl-fail")[0];
    assert_eq!(t["state"], "failed", "{t}");
    assert!(
        t["reason"].as_str().unwrap().contains("exit status 1"),
        "{t}"
    );
    assert!(t["stderr_tail"].as_str().unwrap().contains("boom"), "{t}");
    assert_eq!(t["failed_attempts"].as_array().unwrap().len(), 2, "{t}");
    // `quantune logs` reads the attempts' files in the shared directory.
    for attempt in ["1", "2"] {
        let out = d.cli(&["logs", "sl-fail", "0", "--attempt", attempt]);
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("boom: trial 0 failed on purpose"),
            "attempt {attempt}: {}",
            common::text(&out)
        );
    }
}

#[test]
fn cancel_and_prune_scancel_the_job() {
    if slurm().is_none() {
        return;
    }
    let d = daemon();
    submit(
        &d,
        "sl-cancel",
        &study(
            "sl-cancel",
            1,
            1,
            "env = { MODE = \"sleep\", SLEEP = \"300\" }",
        ),
    );
    let trials = wait_until(
        &d,
        "a job id",
        60,
        |t| t[0]["job_id"].is_string(),
        "sl-cancel",
    );
    let job = trials[0]["job_id"].as_str().unwrap().to_string();
    assert!(d.cli(&["cancel", "sl-cancel"]).status.success());
    wait_until(
        &d,
        "the cancelled trial",
        60,
        |t| t[0]["state"] == "cancelled",
        "sl-cancel",
    );
    let t = Instant::now();
    while squeue_ids().contains(&job) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "job {job} still queued after cancel"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The quality gate prunes a trial whose first report breaks the constraint: scancel too.
    let toml = study("sl-prune", 1, 1, "env = { SLEEP = \"2\" }")
        .replace("objective.sh", "curve.sh")
        .replace("choices = [\"a\"]", "choices = [\"b\"]")
        .replace("[trial]", "[[constraint]]\nmetric = \"delta\"\nmax = 0.05\n\n[pruner]\nconstraint_grace = 0.01\n\n[trial]");
    submit(&d, "sl-prune", &toml);
    d.wait_study("sl-prune", Duration::from_secs(60));
    let t = &d.trials("sl-prune")[0];
    assert_eq!(t["state"], "pruned", "{t}");
    assert!(!squeue_ids().contains(&t["job_id"].as_str().unwrap().to_string()));
}

#[test]
fn slurm_time_limit_fails_the_trial_as_timeout() {
    if slurm().is_none() {
        return;
    }
    let d = daemon();
    // timeout = 1m → --time=1; Slurm checks limits every 30 s, so this ends after 60–100 s.
    let toml = study(
        "sl-time",
        1,
        1,
        "env = { MODE = \"sleep\", SLEEP = \"600\" }",
    )
    .replace("timeout = \"10m\"", "timeout = \"1m\"");
    submit(&d, "sl-time", &toml);
    d.wait_study("sl-time", Duration::from_secs(240));
    let t = &d.trials("sl-time")[0];
    assert_eq!(t["state"], "failed", "{t}");
    assert!(t["reason"].as_str().unwrap().contains("timeout"), "{t}");
}

#[test]
fn kill_9_while_jobs_queue_and_run_collects_each_trial_once() {
    if slurm().is_none() {
        return;
    }
    let mut d = daemon();
    submit(
        &d,
        "sl-crash",
        &study(
            "sl-crash",
            6,
            3,
            "env = { MODE = \"sleep\", SLEEP = \"3\" }",
        ),
    );
    for _ in 0..2 {
        wait_until(
            &d,
            "running jobs",
            60,
            |t| {
                t.iter()
                    .filter(|t| t["job_id"].is_string() && t["state"] == "running")
                    .count()
                    >= 2
            },
            "sl-crash",
        );
        d.kill9();
        std::thread::sleep(Duration::from_secs(2));
        d.spawn();
    }
    assert_eq!(
        d.wait_study("sl-crash", Duration::from_secs(180)),
        "completed",
        "{}",
        d.log()
    );
    let trials = d.trials("sl-crash");
    assert_eq!(trials.len(), 6);
    let mut jobs = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t["trial"], i as u64);
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["attempt"], 1, "re-attached, never re-run: {t}");
        jobs.push(t["job_id"].as_str().unwrap().to_string());
    }
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 6, "one job per trial");
}

#[test]
fn third_gpu_trial_waits_for_a_free_gpu() {
    if slurm().is_none() {
        return;
    }
    let d = daemon();
    submit(
        &d,
        "sl-gpu",
        &study(
            "sl-gpu",
            3,
            3,
            "gpus = 1\nenv = { MODE = \"sleep\", SLEEP = \"4\" }",
        ),
    );
    let trials = wait_until(
        &d,
        "two running and one pending job",
        60,
        |t| {
            t.iter().filter(|t| t["job_state"] == "RUNNING").count() == 2
                && t.iter().filter(|t| t["job_state"] == "PENDING").count() == 1
        },
        "sl-gpu",
    );
    assert_eq!(trials.len(), 3);
    assert_eq!(
        d.wait_study("sl-gpu", Duration::from_secs(120)),
        "completed"
    );
}

#[test]
fn a_slurm_study_on_a_daemon_restarted_without_slurm_waits_and_says_why() {
    if slurm().is_none() {
        return;
    }
    let mut d = daemon();
    submit(
        &d,
        "sl-gone",
        &study(
            "sl-gone",
            2,
            1,
            "env = { MODE = \"sleep\", SLEEP = \"60\" }",
        ),
    );
    let trials = wait_until(
        &d,
        "a running job",
        60,
        |t| t.iter().any(|t| t["job_id"].is_string()),
        "sl-gone",
    );
    let job = trials[0]["job_id"].as_str().unwrap().to_string();
    assert!(d.stop());
    // The operator drops [executor.slurm] from the config and restarts the daemon.
    let config = std::fs::read_to_string(&d.config).unwrap();
    let kept = &config[..config.find("[executor.slurm]").unwrap()];
    std::fs::write(&d.config, kept).unwrap();
    d.spawn();
    let t = Instant::now();
    let status = loop {
        let s = d.json(&["status", "sl-gone"]);
        if s["waiting"].is_string() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{s}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = Command::new("scancel").arg(&job).output();
    assert_eq!(status["state"], "running", "{status}");
    let why = status["waiting"].as_str().unwrap();
    assert!(
        why.contains("trial.executor = \"slurm\" but this daemon has no such executor; configure [executor.slurm]"),
        "{why}"
    );
    let shown = common::text(&d.cli(&["status", "sl-gone"]));
    assert!(shown.contains("configure [executor.slurm]"), "{shown}");
}
