//! End-to-end tests: the real `quantune serve` daemon (and `quantune run`) driven through the
//! real CLI, asserting through the stable `--format json` output (docs/CLI.md).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Generous deadline for a small study to finish (the machine may be busy).
const FINISH: Duration = Duration::from_secs(60);

/// What tests/fixtures/objective.sh computes.
fn expected_loss(params: &Value) -> f64 {
    let x = params["x"].as_f64().expect("x is a number");
    let q = params["q"].as_str().expect("q is a string");
    (x - 1.0) * (x - 1.0) + if q == "b" { 1.0 } else { 0.0 }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn submit(d: &Daemon, file: &str, toml: &str) {
    let f = d.write(file, toml);
    let out = d.cli(&["submit", path_str(&f)]);
    assert!(out.status.success(), "submit {file} failed: {}", text(&out));
}

fn numbers(trials: &[Value]) -> Vec<u64> {
    trials
        .iter()
        .map(|t| t["trial"].as_u64().expect("trial number"))
        .collect()
}

fn assert_numbered(trials: &[Value], n: u64) {
    let nums = numbers(trials);
    assert_eq!(nums.len() as u64, n, "trials: {trials:#?}");
    let set: BTreeSet<u64> = nums.iter().copied().collect();
    assert_eq!(
        set,
        (0..n).collect(),
        "each trial number exactly once: {nums:?}"
    );
}

fn attempts(t: &Value) -> Vec<Value> {
    t["failed_attempts"].as_array().cloned().unwrap_or_default()
}

/// Kills process groups when dropped (cleans up after a failed assertion).
struct KillGroups(Vec<u32>);

impl Drop for KillGroups {
    fn drop(&mut self) {
        for pg in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pg}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits for a child process with a deadline; kills it and panics past the deadline.
fn wait_child(child: &mut std::process::Child, timeout: Duration, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// 1. A study runs to completion; the leaderboard is ranked and holds what the trials computed.
#[test]
fn study_completes_with_ranked_leaderboard() {
    let d = Daemon::start(2, "");
    submit(
        &d,
        "basic.toml",
        &study_toml("basic", &objective_command(), 6, 2, ""),
    );
    assert_eq!(d.wait_study("basic", FINISH), "completed");

    let status = d.json(&["status", "basic"]);
    assert_eq!(status["max_trials"], 6);
    assert_eq!(status["trials"], 6);
    assert_eq!(status["counts"]["complete"], 6, "{status:#}");

    let board = d.leaderboard("basic");
    assert_eq!(board.len(), 6, "{board:#?}");
    let mut prev = f64::NEG_INFINITY;
    for (i, row) in board.iter().enumerate() {
        assert_eq!(row["rank"], i as u64 + 1, "{row:#}");
        assert_eq!(row["state"], "complete");
        let loss = row["metrics"]["loss"].as_f64().expect("loss metric");
        let want = expected_loss(&row["params"]);
        assert!(
            (loss - want).abs() < 1e-9,
            "trial {}: loss {loss} but the objective gives {want}",
            row["trial"]
        );
        assert!(
            loss >= prev,
            "leaderboard not ascending: {prev} then {loss}"
        );
        prev = loss;
        for key in ["trial", "state", "params", "metrics", "reason"] {
            assert!(row.get(key).is_some(), "row lacks {key}: {row:#}");
        }
    }
    assert_numbered(&board, 6);

    let trials = d.trials("basic");
    assert_eq!(
        numbers(&trials),
        (0..6).collect::<Vec<_>>(),
        "trials in number order"
    );
    assert!(
        trials.iter().all(|t| t["state"] == "complete"),
        "{trials:#?}"
    );

    let csv = d.cli(&["leaderboard", "basic", "--format", "csv"]);
    assert!(csv.status.success(), "{}", text(&csv));
    let csv = String::from_utf8_lossy(&csv.stdout);
    let header: Vec<&str> = csv.lines().next().expect("csv header").split(',').collect();
    for col in ["x", "q", "loss"] {
        assert!(header.contains(&col), "csv header {header:?} lacks {col}");
    }
    assert_eq!(csv.lines().count(), 7, "header + 6 rows:\n{csv}");
}

// 2. A failing trial is retried, then failed with its reason and stderr; max_failed ends the study.
#[test]
fn failing_trials_are_retried_then_fail_the_study() {
    let d = Daemon::start(2, "");
    let toml = study_toml_full(
        "fails",
        &objective_command(),
        5,
        1,
        "max_failed = 2",
        "30s",
        "retries = 1\nenv = { MODE = \"fail\" }",
    );
    submit(&d, "fails.toml", &toml);
    assert_eq!(d.wait_study("fails", FINISH), "failed");
    let status = d.json(&["status", "fails"]);
    let msg = status["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("failed") && msg.contains("max_failed"),
        "message: {msg:?}"
    );

    // Nothing more starts once the study has failed.
    std::thread::sleep(Duration::from_millis(1200));
    let trials = d.trials("fails");
    assert_numbered(&trials, 2);
    for t in &trials {
        assert_eq!(t["state"], "failed", "{t:#}");
        let reason = t["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("exit status 1"), "reason: {reason:?}");
        let tail = t["stderr_tail"].as_str().unwrap_or_default();
        assert!(tail.contains("boom"), "stderr_tail: {tail:?}");
        let a = attempts(t);
        assert_eq!(a.len(), 2, "one retry, so two failed attempts: {t:#}");
        for at in &a {
            assert!(
                at["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("exit status 1"),
                "{at:#}"
            );
        }
    }
}

// 3. A trial over its timeout is failed and its whole process group killed.
#[test]
fn timeout_kills_the_whole_process_group() {
    let d = Daemon::start(2, "");
    let command = r#"["sh", "-c", "sleep 300 & echo $! > pidfile_{trial}; sleep 300"]"#;
    let extra = format!("working_dir = {:?}", path_str(d.dir.path()));
    let toml = study_toml_full("slow", command, 1, 1, "", "2s", &extra);
    submit(&d, "slow.toml", &toml);
    let pidfile = d.dir.path().join("pidfile_0");
    let pid: u32 = wait_for(Duration::from_secs(20), "the trial's pid file", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    assert!(
        pid_alive(pid),
        "grandchild {pid} should run while the trial runs"
    );
    d.wait_study("slow", FINISH);
    let trials = d.trials("slow");
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["state"], "failed", "{:#}", trials[0]);
    let reason = trials[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timeout"), "reason: {reason:?}");
    wait_for(
        Duration::from_secs(10),
        "the grandchild to be killed",
        || (!pid_alive(pid)).then_some(()),
    );
}

// 4. Exit 0 without the objective's final line is a failure that says what is missing.
#[test]
fn missing_final_metric_fails_the_trial() {
    let d = Daemon::start(2, "");
    let toml = study_toml(
        "nometric",
        &objective_command(),
        1,
        1,
        "env = { MODE = \"nometric\" }",
    );
    submit(&d, "nometric.toml", &toml);
    d.wait_study("nometric", FINISH);
    let trials = d.trials("nometric");
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0]["state"], "failed", "{:#}", trials[0]);
    let reason = trials[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("final metrics line"), "reason: {reason:?}");
}

// 5. kill -9 of the daemon at several moments loses nothing and duplicates nothing.
#[test]
fn survives_repeated_kill_9() {
    let mut d = Daemon::start(2, "");
    let toml = study_toml(
        "crashy",
        &objective_command(),
        12,
        2,
        "retries = 5\nenv = { MODE = \"sleep\", SLEEP = \"0.3\" }",
    );
    submit(&d, "crashy.toml", &toml);
    // Kill after n trials completed plus a jitter, so that runs hit different moments (a
    // trial starting, running, finishing, being recorded).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill -9 jitter seed {seed}");
    for (i, n) in [1usize, 3, 6, 8].into_iter().enumerate() {
        let delay = (seed >> (8 * i)) % 300;
        let reached = wait_for(FINISH, "progress before a kill", || {
            let trials = d.trials("crashy");
            let state = d.json(&["status", "crashy"])["state"]
                .as_str()
                .unwrap()
                .to_string();
            if state != "running" {
                return Some(false);
            }
            (count_state(&trials, "complete") >= n && count_state(&trials, "running") > 0)
                .then_some(true)
        });
        if !reached {
            break;
        }
        std::thread::sleep(Duration::from_millis(delay));
        d.kill9();
        d.spawn();
    }
    assert_eq!(d.wait_study("crashy", FINISH), "completed");
    let trials = d.trials("crashy");
    assert_numbered(&trials, 12);
    let mut interrupted = 0;
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        assert!(
            (t["metrics"]["loss"].as_f64().unwrap() - expected_loss(&t["params"])).abs() < 1e-9
        );
        for a in attempts(t) {
            let r = a["reason"].as_str().unwrap_or_default();
            assert!(
                r.contains("interrupted"),
                "unexpected failed attempt: {a:#}"
            );
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= 1,
        "no attempt recorded as interrupted: {trials:#?}"
    );
}

// 6. Two studies on two slots share them.
#[test]
fn two_studies_share_the_slots() {
    let d = Daemon::start(2, "");
    let extra = "env = { MODE = \"sleep\", SLEEP = \"0.2\" }";
    submit(
        &d,
        "alpha.toml",
        &study_toml("alpha", &objective_command(), 6, 2, extra),
    );
    submit(
        &d,
        "beta.toml",
        &study_toml("beta", &objective_command(), 6, 2, extra),
    );
    let started = |t: &[Value]| t.iter().filter(|t| t["state"] != "queued").count();
    let mut both_running = 0;
    let mut first_done: Option<(&str, usize)> = None;
    let t0 = Instant::now();
    loop {
        let a = d.trials("alpha");
        let b = d.trials("beta");
        if count_state(&a, "running") > 0 && count_state(&b, "running") > 0 {
            both_running += 1;
        }
        for (name, mine, other) in [("alpha", &a, &b), ("beta", &b, &a)] {
            if first_done.is_none() && count_state(mine, "complete") == 6 {
                first_done = Some((name, started(other)));
            }
        }
        if count_state(&a, "complete") == 6 && count_state(&b, "complete") == 6 {
            break;
        }
        assert!(
            t0.elapsed() < FINISH,
            "studies did not finish: {a:#?} {b:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(both_running > 0, "never saw both studies running at once");
    let (name, other_started) = first_done.unwrap();
    assert!(
        other_started >= 3,
        "{name} finished all its trials when the other study had started only {other_started}"
    );
    assert_eq!(d.wait_study("alpha", FINISH), "completed");
    assert_eq!(d.wait_study("beta", FINISH), "completed");
}

// 7. External workloads: ask / report / tell.
#[test]
fn ask_report_tell() {
    let d = Daemon::start(2, "");
    let toml = r#"[study]
name = "ext"
seed = 3

[[objective]]
metric = "loss"
direction = "minimize"

[space.x]
type = "float"
low = -5.0
high = 5.0

[budget]
max_trials = 3
parallel = 3

[trial]
workload = "external"
timeout = "10m"
retries = 1
"#;
    submit(&d, "ext.toml", toml);
    let ask = |d: &Daemon| -> Value {
        let out = d.cli(&["ask", "ext"]);
        assert!(out.status.success(), "ask: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("ask prints JSON")
    };
    let a0 = ask(&d);
    assert_eq!(a0["trial"], 0);
    let x = a0["params"]["x"].as_f64().expect("x");
    assert!((-5.0..=5.0).contains(&x), "x = {x} outside the space");
    assert_eq!(d.trials("ext")[0]["state"], "running");

    let out = d.cli(&[
        "report",
        "ext",
        "0",
        "--step",
        "1",
        "--metrics",
        r#"{"loss": 3}"#,
    ]);
    assert!(out.status.success(), "report: {}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout).expect("report prints JSON");
    assert_eq!(r, serde_json::json!({"prune": false}));

    let out = d.cli(&["tell", "ext", "0", "--metrics", r#"{"loss": 1.5}"#]);
    assert!(out.status.success(), "tell: {}", text(&out));
    let t0 = &d.trials("ext")[0];
    assert_eq!(t0["state"], "complete");
    assert_eq!(t0["metrics"]["loss"], 1.5);

    // A tell without the objective metric is refused and names it.
    let a1 = ask(&d);
    assert_eq!(a1["trial"], 1);
    let out = d.cli(&["tell", "ext", "1", "--metrics", r#"{"other": 1}"#]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("loss"),
        "message should name the metric: {}",
        text(&out)
    );
    assert_eq!(d.trials("ext")[1]["state"], "running");

    // A failure with retries left re-queues the trial; the next ask hands it out again.
    let out = d.cli(&["tell", "ext", "1", "--failed", "oom"]);
    assert!(out.status.success(), "tell --failed: {}", text(&out));
    assert_eq!(d.trials("ext")[1]["state"], "queued");
    let again = ask(&d);
    assert_eq!(again["trial"], 1, "the re-queued trial comes first");
    assert_eq!(
        again["params"], a1["params"],
        "a retry keeps its parameters"
    );
    let out = d.cli(&["tell", "ext", "1", "--failed", "oom"]);
    assert!(out.status.success(), "tell --failed: {}", text(&out));
    let t1 = &d.trials("ext")[1];
    assert_eq!(t1["state"], "failed", "{t1:#}");
    assert!(t1["reason"].as_str().unwrap_or_default().contains("oom"));
    assert_eq!(attempts(t1).len(), 2);

    // Beyond max_trials.
    let a2 = ask(&d);
    assert_eq!(a2["trial"], 2);
    let out = d.cli(&["ask", "ext"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("max_trials"), "{}", text(&out));
    let out = d.cli(&["tell", "ext", "2", "--metrics", r#"{"loss": 0.5}"#]);
    assert!(out.status.success(), "tell: {}", text(&out));
    assert_eq!(d.wait_study("ext", FINISH), "completed");
    let board = d.leaderboard("ext");
    assert_eq!(numbers(&board), vec![2, 0]);

    // ask on a command study.
    submit(
        &d,
        "cmd.toml",
        &study_toml("cmd", &objective_command(), 1, 1, ""),
    );
    let out = d.cli(&["ask", "cmd"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("external"), "{}", text(&out));
}

// 8. pause stops new trials, resume continues, cancel ends the study.
#[test]
fn pause_resume_cancel() {
    let d = Daemon::start(2, "");
    let toml = study_toml(
        "pr",
        &objective_command(),
        40,
        2,
        "env = { MODE = \"sleep\", SLEEP = \"0.3\" }",
    );
    submit(&d, "pr.toml", &toml);
    wait_for(FINISH, "two complete trials", || {
        (count_state(&d.trials("pr"), "complete") >= 2).then_some(())
    });

    assert_eq!(d.json(&["pause", "pr"])["state"], "paused");
    // Running trials finish; nothing new starts.
    let trials = wait_for(FINISH, "running trials to finish", || {
        let t = d.trials("pr");
        (count_state(&t, "running") == 0).then_some(t)
    });
    let n = trials.len();
    std::thread::sleep(Duration::from_millis(1200));
    let later = d.trials("pr");
    assert_eq!(later.len(), n, "trials started while paused");
    assert_eq!(count_state(&later, "running"), 0);
    assert_eq!(d.json(&["status", "pr"])["state"], "paused");

    assert_eq!(d.json(&["resume", "pr"])["state"], "running");
    wait_for(FINISH, "new trials after resume", || {
        (d.trials("pr").len() > n).then_some(())
    });

    assert_eq!(d.json(&["cancel", "pr"])["state"], "cancelled");
    let trials = wait_for(FINISH, "no running trial after cancel", || {
        let t = d.trials("pr");
        (count_state(&t, "running") == 0 && count_state(&t, "queued") == 0).then_some(t)
    });
    assert!(trials.len() < 40);
    std::thread::sleep(Duration::from_millis(700));
    let later = d.trials("pr");
    assert_eq!(later.len(), trials.len(), "trials started after cancel");
    assert_eq!(
        count_state(&later, "running") + count_state(&later, "queued"),
        0
    );
    assert_eq!(d.json(&["status", "pr"])["state"], "cancelled");
    let out = d.cli(&["resume", "pr"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled study cannot resume: {}",
        text(&out)
    );
}

// 9. export from one daemon, import into another: same leaderboard.
#[test]
fn export_then_import() {
    let d = Daemon::start(2, "");
    submit(
        &d,
        "exp.toml",
        &study_toml("exp", &objective_command(), 4, 2, ""),
    );
    assert_eq!(d.wait_study("exp", FINISH), "completed");
    let out = d.cli(&["export", "exp"]);
    assert!(out.status.success(), "export: {}", text(&out));
    let data = String::from_utf8(out.stdout).expect("utf-8 export");
    let lines: Vec<&str> = data.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 5,
        "a study line and 4 trials at least:\n{data}"
    );
    for l in &lines {
        serde_json::from_str::<Value>(l)
            .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {l}"));
    }

    let d2 = Daemon::start(2, "");
    let file = d2.write("exp.jsonl", &data);
    let out = d2.cli(&["import", path_str(&file)]);
    assert!(out.status.success(), "import: {}", text(&out));
    assert_eq!(d2.json(&["status", "exp"])["state"], "completed");
    assert_eq!(d2.leaderboard("exp"), d.leaderboard("exp"));
    assert_eq!(d2.trials("exp"), d.trials("exp"));
}

// 10. `quantune run` without a daemon: Ctrl-C, resume, and a different file under the same name.
#[test]
fn foreground_run_interrupt_and_resume() {
    let mut d = Daemon::prepare(2, "");
    let toml = study_toml(
        "fg",
        &objective_command(),
        8,
        2,
        "env = { MODE = \"sleep\", SLEEP = \"0.3\" }",
    );
    // As users run it: relative paths, the study file in another directory than the state
    // (the trials run in the file's directory, the state is relative to the caller's).
    std::fs::create_dir(d.dir.path().join("studies")).unwrap();
    d.write("studies/fg.toml", &toml);
    d.write(
        "studies/fg2.toml",
        &toml.replace("max_trials = 8", "max_trials = 9"),
    );
    let run = |log: &str| {
        let err = std::fs::File::create(d.dir.path().join(log)).unwrap();
        Command::new(bin())
            .args([
                "run",
                "studies/fg.toml",
                "--state",
                "state",
                "--cpu-slots",
                "2",
            ])
            .current_dir(d.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start quantune run")
    };
    let read = |log: &str| std::fs::read_to_string(d.dir.path().join(log)).unwrap_or_default();

    let mut first = run("run1.log");
    wait_for(FINISH, "two finished trials in the progress output", || {
        (read("run1.log")
            .lines()
            .filter(|l| l.contains("] trial ") && l.contains(" complete"))
            .count()
            >= 2)
            .then_some(())
    });
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(first.id().to_string())
        .status();
    let status = wait_child(&mut first, Duration::from_secs(30), "interrupted run");
    assert_eq!(
        status.code(),
        Some(130),
        "interrupted run: {status:?}\n{}",
        read("run1.log")
    );

    let mut second = run("run2.log");
    let status = wait_child(&mut second, FINISH, "resumed run");
    assert_eq!(
        status.code(),
        Some(0),
        "resumed run: {status:?}\n{}",
        read("run2.log")
    );
    assert!(
        read("run2.log").contains("resuming"),
        "{}",
        read("run2.log")
    );

    let out = Command::new(bin())
        .args([
            "run",
            "studies/fg2.toml",
            "--state",
            "state",
            "--cpu-slots",
            "2",
        ])
        .current_dir(d.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run a different file");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("different file"), "{}", text(&out));

    // Inspect the state the runs left through a daemon on the same state dir.
    d.spawn();
    assert_eq!(d.json(&["status", "fg"])["state"], "completed");
    let trials = d.trials("fg");
    assert_numbered(&trials, 8);
    for t in &trials {
        assert_eq!(t["state"], "complete", "{t:#}");
        for a in attempts(t) {
            assert!(
                a["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("interrupted"),
                "{a:#}"
            );
        }
    }
}

// 11. SIGTERM stops the daemon cleanly; interrupted trials are re-queued at no retry cost.
#[test]
fn sigterm_requeues_running_trials() {
    let mut d = Daemon::start(2, "");
    let toml = study_toml(
        "term",
        &objective_command(),
        4,
        2,
        "env = { MODE = \"sleep\", SLEEP = \"1.5\" }",
    );
    submit(&d, "term.toml", &toml);
    wait_for(FINISH, "two running trials", || {
        (count_state(&d.trials("term"), "running") == 2).then_some(())
    });
    let t = Instant::now();
    assert!(d.stop(), "the daemon should exit 0 on SIGTERM\n{}", d.log());
    assert!(
        t.elapsed() < Duration::from_secs(12),
        "stop took {:?}",
        t.elapsed()
    );
    d.spawn();
    assert_eq!(d.wait_study("term", FINISH), "completed");
    let trials = d.trials("term");
    assert_numbered(&trials, 4);
    let mut interrupted = 0;
    for t in &trials {
        // retries = 0: had the interruption cost a retry, the trial would have failed.
        assert_eq!(t["state"], "complete", "{t:#}");
        for a in attempts(t) {
            assert!(
                a["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("interrupted"),
                "{a:#}"
            );
            interrupted += 1;
        }
    }
    assert!(
        interrupted >= 2,
        "both running trials should be recorded as interrupted: {trials:#?}"
    );
}

// 12. A restart whose recovery ends the study (max_failed) leaves no trial queued, in memory
//     or in the store (seen after a second restart).
#[test]
fn recovery_that_fails_the_study_leaves_nothing_queued() {
    let mut d = Daemon::start(2, "");
    // Trial 0 fails its first attempt at once; every other attempt sleeps until killed.
    let command = r#"["sh", "-c", "echo $$ > pid_{trial}; if [ {trial} = 0 ] && [ ! -e failed_once ]; then touch failed_once; exit 1; fi; exec sleep 300"]"#;
    let extra = format!("working_dir = {:?}\nretries = 1", path_str(d.dir.path()));
    let toml = study_toml_full("recover", command, 4, 2, "max_failed = 1", "5m", &extra);
    submit(&d, "recover.toml", &toml);
    wait_for(
        FINISH,
        "trial 0 on its second attempt and trial 1 running",
        || {
            let t = d.trials("recover");
            // Each attempt writes its pid file when it starts (attempt 1 of trial 0 too).
            let started = (0..2).all(|n| {
                std::fs::read_to_string(d.dir.path().join(format!("pid_{n}")))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .is_some_and(pid_alive)
            });
            (started
                && t.len() == 2
                && t.iter().all(|t| t["state"] == "running")
                && t[0]["attempt"] == 2)
                .then_some(())
        },
    );
    d.kill9();
    // The trials' processes outlive a SIGKILLed daemon; the restarted one must end them.
    let pids: Vec<u32> = (0..2)
        .map(|n| {
            let p = std::fs::read_to_string(d.dir.path().join(format!("pid_{n}"))).unwrap();
            p.trim().parse().unwrap()
        })
        .collect();
    let _cleanup = KillGroups(pids.clone());
    assert!(
        pids.iter().all(|p| pid_alive(*p)),
        "the trials should outlive kill -9"
    );
    d.spawn();
    wait_for(
        Duration::from_secs(10),
        "the restarted daemon to kill the leftover trials",
        || pids.iter().all(|p| !pid_alive(*p)).then_some(()),
    );
    // Trial 0 has used its retry: failed, and with max_failed = 1 so is the study; trial 1,
    // re-queued by the recovery, must end with it.
    let check = |d: &Daemon| {
        assert_eq!(d.wait_study("recover", FINISH), "failed");
        let trials = d.trials("recover");
        assert_eq!(trials.len(), 2, "{trials:#?}");
        assert_eq!(trials[0]["state"], "failed", "{:#}", trials[0]);
        assert_eq!(
            count_state(&trials, "queued") + count_state(&trials, "running"),
            0,
            "{trials:#?}"
        );
    };
    check(&d);
    assert!(d.stop(), "{}", d.log());
    d.spawn();
    check(&d);
}

// 13. A study exported while trials run and imported elsewhere re-runs those trials there.
#[test]
fn live_export_imports_and_completes() {
    let mut d = Daemon::start(2, "");
    let toml = study_toml(
        "live",
        &objective_command(),
        4,
        2,
        "env = { MODE = \"sleep\", SLEEP = \"0.5\" }",
    );
    submit(&d, "live.toml", &toml);
    wait_for(FINISH, "two running trials", || {
        (count_state(&d.trials("live"), "running") == 2).then_some(())
    });
    let out = d.cli(&["export", "live"]);
    assert!(out.status.success(), "export: {}", text(&out));
    assert!(d.stop());

    let d2 = Daemon::start(2, "");
    let file = d2.write("live.jsonl", &String::from_utf8(out.stdout).unwrap());
    let out = d2.cli(&["import", path_str(&file)]);
    assert!(out.status.success(), "import: {}", text(&out));
    // retries = 0: being moved to another daemon costs the trials no retry.
    assert_eq!(d2.wait_study("live", FINISH), "completed");
    let trials = d2.trials("live");
    assert_numbered(&trials, 4);
    assert!(
        trials.iter().all(|t| t["state"] == "complete"),
        "{trials:#?}"
    );
    for t in &trials[..2] {
        let a = attempts(t);
        assert_eq!(a.len(), 1, "{t:#}");
        assert!(
            a[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("interrupted"),
            "{t:#}"
        );
    }
}

// 14. A timeout too large for the clock (valid per the study parser) means no timeout; it must
//     not break the trial's supervision.
#[test]
fn huge_timeout_is_no_timeout() {
    let d = Daemon::start(2, "");
    let toml = study_toml_full(
        "huge",
        &objective_command(),
        2,
        2,
        "",
        "18446744073709551615s",
        "",
    );
    submit(&d, "huge.toml", &toml);
    assert_eq!(d.wait_study("huge", FINISH), "completed");
    assert_eq!(count_state(&d.trials("huge"), "complete"), 2);
}
