//! The Ray executor against a real single-node Ray cluster (tests/ray/start.sh: ray[default]
//! in a venv, `ray start --head --num-cpus 4 --num-gpus 2`, token authentication on, the Jobs
//! API on 127.0.0.1). `.ci/run` starts it and sets QUANTUNE_REQUIRE_RAY=1; elsewhere these
//! tests skip, saying so, when Ray cannot be installed.

mod common;

use common::{fixture, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test cluster's Jobs API address and token file.
struct Ray {
    /// `http://127.0.0.1:PORT`.
    address: String,
    /// The bearer token's file.
    token_file: String,
}

/// Starts (or finds) the test cluster once; `None` when Ray cannot be installed here.
fn ray() -> Option<&'static Ray> {
    static RAY: OnceLock<Option<Ray>> = OnceLock::new();
    RAY.get_or_init(|| {
        let required = std::env::var("QUANTUNE_REQUIRE_RAY").is_ok_and(|v| v == "1");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ray/start.sh");
        let out = Command::new("bash")
            .arg(script)
            .output()
            .expect("run tests/ray/start.sh");
        if !out.status.success() {
            assert!(
                !required,
                "QUANTUNE_REQUIRE_RAY=1 but Ray cannot be started: {}",
                common::text(&out)
            );
            eprintln!(
                "SKIPPED: cannot install or start Ray (tests/ray/start.sh): {}",
                common::text(&out)
            );
            return None;
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("start.sh printed no {k}: {stdout}"))
                .to_string()
        };
        let r = Ray {
            address: get("QUANTUNE_RAY_ADDRESS="),
            token_file: get("QUANTUNE_RAY_TOKEN_FILE="),
        };
        // A test run that failed half-way may have left jobs holding the cluster's GPUs.
        for j in r.jobs("quantune-ray-") {
            if j["status"] == "PENDING" || j["status"] == "RUNNING" {
                let id = j["submission_id"].as_str().unwrap();
                r.request("POST", &format!("/api/jobs/{id}/stop"));
            }
        }
        Some(r)
    })
    .as_ref()
}

impl Ray {
    /// `GET path` on the Jobs API, as JSON.
    fn get(&self, path: &str) -> Value {
        self.request("GET", path)
    }

    /// `METHOD path` (no body) on the Jobs API; the 200 reply as JSON.
    fn request(&self, method: &str, path: &str) -> Value {
        let authority = self.address.strip_prefix("http://").unwrap();
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        let mut s = std::net::TcpStream::connect(authority).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            token.trim()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
            "{path}: {reply}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// A job's status (`SUCCEEDED`, `STOPPED`, …).
    fn status(&self, id: &str) -> String {
        self.get(&format!("/api/jobs/{id}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Every job whose submission id starts with `prefix`.
    fn jobs(&self, prefix: &str) -> Vec<Value> {
        let Value::Array(all) = self.get("/api/jobs/") else {
            panic!("not a list")
        };
        all.into_iter()
            .filter(|j| {
                j["submission_id"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(prefix))
            })
            .collect()
    }
}

/// `base` made unique to this test process: the cluster outlives test runs and keeps every job
/// it ran, and tests count a study's jobs by their submission ids.
fn unique(base: &str) -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    let tag = TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{:x}", (nanos as u32) ^ std::process::id())
    });
    Box::leak(format!("{base}-{tag}").into_boxed_str())
}

/// Held by the tests that use the cluster's two GPUs, so that they do not share them.
fn gpus() -> std::sync::MutexGuard<'static, ()> {
    static GPUS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GPUS.lock().unwrap_or_else(|p| p.into_inner())
}

fn daemon(r: &Ray) -> Daemon {
    daemon_with(r, "")
}

/// A daemon whose `[executor.ray]` points at the test cluster, with `extra` keys.
fn daemon_with(r: &Ray, extra: &str) -> Daemon {
    daemon_at(r, &r.address, extra)
}

/// A daemon whose `[executor.ray]` points at `address`.
fn daemon_at(r: &Ray, address: &str, extra: &str) -> Daemon {
    let shared = tempfile::tempdir().unwrap().keep();
    Daemon::start(
        2,
        &format!(
            "[executor.ray]\naddress = {address:?}\ntoken_file = {:?}\nshared_dir = {:?}\nnum_cpus = 0.25\npoll_interval = \"1s\"\n{extra}\n",
            r.token_file, shared
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
executor = "ray"
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

/// Waits until Ray reports job `id` in `status`.
fn wait_ray_status(r: &Ray, id: &str, status: &str) {
    let t = Instant::now();
    loop {
        let s = r.status(id);
        if s == status {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Ray job {id} is {s}, not {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn study_completes_with_every_trial_a_ray_job() {
    let Some(r) = ray() else { return };
    let ray_ok = unique("ray-ok");
    let d = daemon(r);
    submit(&d, ray_ok, &study(ray_ok, 4, 4, ""));
    assert_eq!(
        d.wait_study(ray_ok, Duration::from_secs(180)),
        "completed",
        "{}",
        d.log()
    );
    let trials = d.trials(ray_ok);
    assert_eq!(trials.len(), 4);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["executor"], "ray");
        let id = t["job_id"].as_str().unwrap();
        assert!(
            id.starts_with(&format!("quantune-{ray_ok}-{}-1-", t["trial"])),
            "{t}"
        );
        let job = r.get(&format!("/api/jobs/{id}"));
        assert_eq!(job["status"], "SUCCEEDED", "{job}");
        assert_eq!(job["metadata"]["quantune_trial"], t["trial"].to_string());
        assert_eq!(
            job["runtime_env"]["env_vars"]["QUANTUNE_TRIAL"],
            t["trial"].to_string(),
            "{job}"
        );
        let x = t["params"]["x"].as_f64().unwrap();
        assert!((t["metrics"]["loss"].as_f64().unwrap() - (x - 1.0).powi(2)).abs() < 1e-9);
    }
}

#[test]
fn failing_trial_is_retried_then_failed_with_its_log_tail() {
    let Some(r) = ray() else { return };
    let ray_fail = unique("ray-fail");
    let d = daemon(r);
    submit(
        &d,
        ray_fail,
        &study(ray_fail, 1, 1, "retries = 1\nenv = { MODE = \"fail\" }"),
    );
    d.wait_study(ray_fail, Duration::from_secs(180));
    let t = &d.trials(ray_fail)[0];
    assert_eq!(t["state"], "failed", "{t}");
    assert_eq!(t["reason"], "exit status 1", "{t}");
    assert!(
        t["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("boom: trial 0 failed on purpose"),
        "{t}"
    );
    assert_eq!(t["failed_attempts"].as_array().unwrap().len(), 2, "{t}");
    // Ray keeps the output itself: `quantune logs` says where.
    let out = d.cli(&["logs", ray_fail, "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("ray job logs"),
        "{}",
        common::text(&out)
    );
    let jobs = r.jobs(&format!("quantune-{ray_fail}-0-"));
    assert_eq!(jobs.len(), 2, "one Ray job per attempt: {jobs:?}");
    for j in &jobs {
        assert_eq!(j["status"], "FAILED", "{j}");
        assert_eq!(j["driver_exit_code"], 1, "{j}");
    }
}

#[test]
fn cancel_and_prune_stop_the_ray_job() {
    let Some(r) = ray() else { return };
    let ray_cancel = unique("ray-cancel");
    let ray_prune = unique("ray-prune");
    let d = daemon(r);
    submit(
        &d,
        ray_cancel,
        &study(
            ray_cancel,
            1,
            1,
            "env = { MODE = \"sleep\", SLEEP = \"300\" }",
        ),
    );
    let trials = wait_until(
        &d,
        "a running Ray job",
        120,
        |t| t[0]["job_state"] == "RUNNING",
        ray_cancel,
    );
    let job = trials[0]["job_id"].as_str().unwrap().to_string();
    assert!(d.cli(&["cancel", ray_cancel]).status.success());
    wait_until(
        &d,
        "the cancelled trial",
        60,
        |t| t[0]["state"] == "cancelled",
        ray_cancel,
    );
    wait_ray_status(r, &job, "STOPPED");

    // The quality gate prunes a trial whose first report breaks the constraint: stopped too.
    let toml = study(ray_prune, 1, 1, "env = { SLEEP = \"3\" }")
        .replace("objective.sh", "curve.sh")
        .replace("choices = [\"a\"]", "choices = [\"b\"]")
        .replace("[trial]", "[[constraint]]\nmetric = \"delta\"\nmax = 0.05\n\n[pruner]\nconstraint_grace = 0.01\n\n[trial]");
    submit(&d, ray_prune, &toml);
    d.wait_study(ray_prune, Duration::from_secs(120));
    let t = &d.trials(ray_prune)[0];
    assert_eq!(t["state"], "pruned", "{t}");
    wait_ray_status(r, t["job_id"].as_str().unwrap(), "STOPPED");
}

#[test]
fn trial_past_its_timeout_is_stopped_and_failed_and_deleted() {
    let Some(r) = ray() else { return };
    let ray_time = unique("ray-time");
    let d = daemon_with(r, "delete_finished = true");
    let toml = study(
        ray_time,
        1,
        1,
        "env = { MODE = \"sleep\", SLEEP = \"300\" }",
    )
    .replace("timeout = \"10m\"", "timeout = \"4s\"");
    submit(&d, ray_time, &toml);
    d.wait_study(ray_time, Duration::from_secs(120));
    let t = &d.trials(ray_time)[0];
    assert_eq!(t["state"], "failed", "{t}");
    assert!(
        t["reason"].as_str().unwrap().starts_with("timeout after 4"),
        "{t}"
    );
    // delete_finished: the stopped job is deleted from Ray some seconds after it was collected
    // (and stays deleted).
    let t = Instant::now();
    while !r.jobs(&format!("quantune-{ray_time}-0-")).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(60), "still in Ray");
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let jobs = r.jobs(&format!("quantune-{ray_time}-0-"));
    assert!(jobs.is_empty(), "{jobs:?}");
}

#[test]
fn kill_9_mid_study_collects_each_trial_once() {
    let Some(r) = ray() else { return };
    let ray_crash = unique("ray-crash");
    let mut d = daemon(r);
    submit(
        &d,
        ray_crash,
        &study(ray_crash, 6, 3, "env = { MODE = \"sleep\", SLEEP = \"4\" }"),
    );
    for _ in 0..2 {
        wait_until(
            &d,
            "running Ray jobs",
            120,
            |t| {
                t.iter()
                    .filter(|t| t["job_state"] == "RUNNING" && t["state"] == "running")
                    .count()
                    >= 2
            },
            ray_crash,
        );
        d.kill9();
        // Some jobs end while the daemon is away.
        std::thread::sleep(Duration::from_secs(3));
        d.spawn();
    }
    assert_eq!(
        d.wait_study(ray_crash, Duration::from_secs(240)),
        "completed",
        "{}",
        d.log()
    );
    let trials = d.trials(ray_crash);
    assert_eq!(trials.len(), 6);
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t["trial"], i as u64);
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["attempt"], 1, "re-attached, never re-run: {t}");
        let jobs = r.jobs(&format!("quantune-{ray_crash}-{i}-"));
        assert_eq!(jobs.len(), 1, "one Ray job for trial {i}: {jobs:?}");
        assert_eq!(jobs[0]["submission_id"], t["job_id"]);
        assert_eq!(jobs[0]["status"], "SUCCEEDED");
    }
}

#[test]
fn two_gpu_trials_run_at_once_and_a_third_waits() {
    let Some(r) = ray() else { return };
    let ray_gpu = unique("ray-gpu");
    let _gpus = gpus();
    let d = daemon(r);
    let script = d.write(
        "gpu.sh",
        "sleep 4\nprintf '{\"loss\": %s, \"cuda_visible_devices\": \"%s\"}\\n' \"$1\" \"$CUDA_VISIBLE_DEVICES\" >> \"$QUANTUNE_METRICS_FILE\"\n",
    );
    let toml = study(ray_gpu, 3, 3, "gpus = 1").replace(
        &format!(
            "\"{}\", \"{{x}}\", \"{{q}}\"",
            fixture("objective.sh").display()
        ),
        &format!("\"{}\", \"{{x}}\"", script.display()),
    );
    submit(&d, ray_gpu, &toml);
    let trials = wait_until(
        &d,
        "two running and one pending Ray job",
        120,
        |t| {
            t.iter().filter(|t| t["job_state"] == "RUNNING").count() == 2
                && t.iter().filter(|t| t["job_state"] == "PENDING").count() == 1
        },
        ray_gpu,
    );
    assert_eq!(trials.len(), 3);
    assert_eq!(
        d.wait_study(ray_gpu, Duration::from_secs(180)),
        "completed",
        "{}",
        d.log()
    );
    let trials = d.trials(ray_gpu);
    let mut seen: Vec<String> = trials
        .iter()
        .map(|t| {
            t["info"]["cuda_visible_devices"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert!(
        !seen.is_empty() && seen.iter().all(|g| g == "0" || g == "1"),
        "each trial sees one of the cluster's two GPUs: {seen:?}"
    );
}

#[test]
fn cancel_ends_a_pending_gpu_job_at_once() {
    let Some(r) = ray() else { return };
    let (hold, pend) = (unique("ray-hold"), unique("ray-pend"));
    let _gpus = gpus();
    let d = daemon(r);
    let sleeping = "gpus = 1\nenv = { MODE = \"sleep\", SLEEP = \"300\" }";
    // One study holds both GPUs; the other's trial waits for one.
    submit(&d, hold, &study(hold, 2, 2, sleeping));
    wait_until(
        &d,
        "two running Ray jobs",
        120,
        |t| t.len() == 2 && t.iter().all(|t| t["job_state"] == "RUNNING"),
        hold,
    );
    submit(&d, pend, &study(pend, 1, 1, sleeping));
    let trials = wait_until(
        &d,
        "a pending Ray job",
        60,
        |t| t.len() == 1 && t[0]["job_state"] == "PENDING",
        pend,
    );
    let pending = trials[0]["job_id"].as_str().unwrap().to_string();
    // Ray holds the stop of a pending job until it gets its GPU (here: in 300 s); the trial
    // does not wait for that.
    assert!(d.cli(&["cancel", pend]).status.success());
    wait_until(
        &d,
        "the pending trial cancelled",
        30,
        |t| t[0]["state"] == "cancelled",
        pend,
    );
    assert_eq!(r.status(&pending), "PENDING");
    assert!(d.cli(&["cancel", hold]).status.success());
    // Once the GPUs are free Ray starts the pending job, which stops without running its
    // command (the entrypoint writes start.<attempt> right before it).
    let t = Instant::now();
    loop {
        let s = r.status(&pending);
        if s == "STOPPED" || s == "FAILED" {
            let job = r.get(&format!("/api/jobs/{pending}"));
            let metrics = job["runtime_env"]["env_vars"]["QUANTUNE_METRICS_FILE"]
                .as_str()
                .unwrap();
            let dir = Path::new(metrics).parent().unwrap();
            assert!(dir.join("cancel.1").exists(), "{job}");
            assert!(!dir.join("start.1").exists(), "{job}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the pending job {pending} is still {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `quantune serve` with `config` appended to a minimal config; expects it to refuse to
/// start, and returns what it said.
fn serve_refuses(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quantune.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = {:?}\nsocket = {:?}\ngpu_discovery = false\n{config}\n",
            dir.path().join("state"),
            dir.path().join("q.sock")
        ),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", common::text(&out));
    common::text(&out)
}

#[test]
fn bad_ray_settings_stop_the_daemon_with_the_field_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = dir.path().join("shared");
    let base = format!("[executor.ray]\nshared_dir = {shared:?}\n");
    let said = serve_refuses(&format!("{base}token_file = {token:?}"));
    assert!(
        said.contains("executor.ray.token_file") && said.contains("chmod 600"),
        "{said}"
    );
    let said = serve_refuses(&format!("{base}address = \"https://ray:8265\""));
    assert!(said.contains("https is not supported"), "{said}");
    let said = serve_refuses(&format!(
        "{base}[executor.ray.runtime_env]\nworking_dir = \"/code\""
    ));
    assert!(said.contains("not a local directory"), "{said}");
    let said = serve_refuses(&format!("{base}num_gpus = 1"));
    assert!(
        said.contains("quantune.toml:6") && said.contains("num_gpus"),
        "{said}"
    );
}

#[test]
fn a_ray_study_is_refused_by_a_daemon_without_ray() {
    let d = Daemon::start(2, "");
    let f = d.write("r.toml", &study("no-ray", 1, 1, ""));
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("configure [executor.ray]"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn a_job_recorded_but_never_submitted_is_submitted_after_a_restart() {
    let Some(r) = ray() else { return };
    let ray_late = unique("ray-late");
    // Nothing listens on port 9: the Jobs API is unreachable, the submission waits.
    let mut d = daemon_at(r, "http://127.0.0.1:9", "");
    submit(&d, ray_late, &study(ray_late, 1, 1, ""));
    let trials = wait_until(
        &d,
        "an unreachable Ray",
        60,
        |t| t.len() == 1 && t[0]["job_state"] == "UNREACHABLE",
        ray_late,
    );
    let id = trials[0]["job_id"].as_str().unwrap().to_string();
    assert!(r.jobs(&id).is_empty(), "never submitted");
    d.kill9();
    // The operator fixes the address; the restarted daemon submits the job under its id.
    let config = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, config.replace("http://127.0.0.1:9", &r.address)).unwrap();
    d.spawn();
    assert_eq!(
        d.wait_study(ray_late, Duration::from_secs(120)),
        "completed",
        "{}",
        d.log()
    );
    let t = &d.trials(ray_late)[0];
    assert_eq!(t["attempt"], 1, "{t}");
    assert_eq!(t["job_id"], id.as_str(), "{t}");
    let jobs = r.jobs(&format!("quantune-{ray_late}-"));
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "SUCCEEDED");
}

#[test]
fn a_lost_job_supervisor_reruns_the_trial_without_costing_a_retry() {
    let Some(r) = ray() else { return };
    let ray_lost = unique("ray-lost");
    let d = daemon(r);
    // retries = 0: only a re-run that costs no retry can complete this trial after the loss.
    submit(
        &d,
        ray_lost,
        &study(
            ray_lost,
            1,
            1,
            "retries = 0\nenv = { MODE = \"sleep\", SLEEP = \"6\" }",
        ),
    );
    wait_until(
        &d,
        "a running Ray job",
        120,
        |t| t[0]["job_state"] == "RUNNING",
        ray_lost,
    );
    // What a lost node does to a job: its supervisor actor dies. The entrypoint's shell (its
    // command line names the attempt's files) is the supervisor's child.
    let pattern = format!("{ray_lost}/0/start\\.1");
    let t = Instant::now();
    let shell = loop {
        let out = Command::new("pgrep")
            .args(["-f", &pattern])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some(pid) = pids.lines().next() {
            break pid.to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no entrypoint process"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = std::fs::read_to_string(format!("/proc/{shell}/status")).unwrap();
    let supervisor = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(Command::new("kill")
        .args(["-9", &supervisor])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        d.wait_study(ray_lost, Duration::from_secs(120)),
        "completed",
        "{}",
        d.log()
    );
    let t = &d.trials(ray_lost)[0];
    assert_eq!(t["state"], "complete", "{t}");
    assert_eq!(t["attempt"], 2, "{t}");
    let reason = t["failed_attempts"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("requeued by quantune: Ray job ")
            && reason.contains("JOB_SUPERVISOR_ACTOR_DIED"),
        "{reason}"
    );
}

#[test]
fn a_refused_token_shows_in_the_job_state() {
    let Some(r) = ray() else { return };
    let ray_auth = unique("ray-auth");
    let shared = tempfile::tempdir().unwrap();
    // No token_file: the test cluster refuses every request.
    let d = Daemon::start(
        2,
        &format!(
            "[executor.ray]\naddress = {:?}\nshared_dir = {:?}\npoll_interval = \"1s\"\n",
            r.address,
            shared.path()
        ),
    );
    submit(&d, ray_auth, &study(ray_auth, 1, 1, ""));
    let trials = wait_until(
        &d,
        "the refusal",
        60,
        |t| t.len() == 1 && t[0]["job_state"].is_string(),
        ray_auth,
    );
    assert_eq!(
        trials[0]["job_state"],
        "UNAUTHORIZED (check executor.ray.token_file / headers_file)"
    );
    assert!(r.jobs(&format!("quantune-{ray_auth}-")).is_empty());
    assert!(d.log().contains("HTTP 401"), "{}", d.log());
}
