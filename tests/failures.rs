//! Failures that show, end to end through the real binary: a trial program that is not on PATH
//! is refused by `validate` and by the daemon (with the closest name), a pruner metric typo is
//! warned about before and while the study runs, a study whose every trial failed ends `failed`
//! with the first reason, `quantune logs` prints a trial's output (in bounded pieces, and while
//! it runs with --follow), `studies`/`status` count every final state, one "best" trade-off is
//! named by every view of a two-objective study, and errors that used to point the wrong way
//! (an unknown curve metric, a wrong bearer token) say what is wrong.

mod common;

use common::{bin, fixture, text, wait_for, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs a CLI command that must succeed; returns its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "quantune {args:?}: {}\n{}",
        text(&out),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A study answered through ask/report/tell. `objectives` and `pruner` are TOML sections.
fn external_study(name: &str, objectives: &str, pruner: &str, max_trials: u64) -> String {
    format!(
        "[study]\nname = \"{name}\"\nseed = 3\n\n{objectives}\n\
         [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n[strategy]\nkind = \"random\"\n\n\
         [budget]\nmax_trials = {max_trials}\nmax_failed = 100\n\n\
         [trial]\nworkload = \"external\"\ntimeout = \"10m\"\n\n{pruner}\n"
    )
}

const LOSS: &str = "[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n";

fn ask(d: &Daemon, study: &str) -> String {
    let v: Value = serde_json::from_str(&ok(d, &["ask", study])).unwrap();
    v["trial"].as_u64().unwrap().to_string()
}

/// A study running `noisy.sh` (`env` is its `[trial.env]` body).
fn noisy_study(name: &str, max_trials: u64, env: &str) -> String {
    format!(
        "[study]\nname = \"{name}\"\nseed = 1\n\n{LOSS}\n[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n\
         [budget]\nmax_trials = {max_trials}\nparallel = 1\n\n\
         [trial]\ncommand = [\"sh\", {:?}, \"{{x}}\"]\ntimeout = \"60s\"\n\n[trial.env]\n{env}\n",
        fixture("noisy.sh").display().to_string()
    )
}

fn validate(file: &Path) -> Output {
    Command::new(bin())
        .arg("validate")
        .arg(file)
        .output()
        .unwrap()
}

/// Whether `name` is an executable on this process's PATH.
fn on_path(name: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(name).is_file())
}

#[test]
fn a_program_not_found_is_refused_with_file_line_and_a_suggestion() {
    let d = Daemon::start(1, "");
    let study = |name: &str, command: &str| {
        format!(
            "[study]\nname = \"{name}\"\n\n{LOSS}\n[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n\
             [budget]\nmax_trials = 2\n\n[trial]\ncommand = {command}\ntimeout = \"30s\"\n"
        )
    };
    let source = study("typo", r#"["pythn3", "train.py", "{x}"]"#);
    let line = 1 + source
        .lines()
        .position(|l| l.starts_with("command"))
        .unwrap();
    let typo = d.write("typo.toml", &source);
    for out in [validate(&typo), d.cli(&["submit", typo.to_str().unwrap()])] {
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{t}");
        // The file, the line of `command`, the field, what is wrong.
        assert!(t.contains(&format!("typo.toml:{line}:")), "{t}");
        assert!(
            t.contains("trial.command[0]: \"pythn3\" is not found on PATH"),
            "{t}"
        );
        if on_path("python3") {
            assert!(t.contains("did you mean python3?"), "{t}");
        }
    }
    // Trials that start on other machines: only a warning, since their PATH is not this one.
    let remote = d.write(
        "remote.toml",
        &source.replace("timeout = ", "executor = \"slurm\"\ntimeout = "),
    );
    let out = validate(&remote);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning: ")
            && text(&out).contains("on this machine, \"pythn3\" is not found on PATH")
            && text(&out).contains("trial.executor = \"slurm\" starts it on others"),
        "{}",
        text(&out)
    );
    // A path with a slash is looked for relative to the working directory, as trials start.
    let rel = d.write("rel.toml", &study("rel", r#"["./train.sh", "{x}"]"#));
    let out = validate(&rel);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("\"./train.sh\" does not exist")
            && text(&out).contains("relative to trial.working_dir"),
        "{}",
        text(&out)
    );
    let script = d.write("train.sh", "#!/bin/sh\n");
    let out = validate(&rel);
    assert!(text(&out).contains("is not executable"), "{}", text(&out));
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = validate(&rel);
    assert!(out.status.success(), "{}", text(&out));
    // The daemon looks it up itself: the submission with the daemon's view passes too.
    ok(&d, &["submit", rel.to_str().unwrap()]);
}

#[test]
fn a_pruner_metric_no_report_carries_is_warned_about() {
    let d = Daemon::start(1, "");
    let objectives = "[[objective]]\nmetric = \"eval_loss\"\ndirection = \"minimize\"\n";
    let pruner = "[pruner]\nkind = \"median\"\nmetric = \"eval_los\"\nmin_trials = 1\n";
    let f = d.write("p.toml", &external_study("p", objectives, pruner, 2));
    let out = validate(&f);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pruner.metric: \"eval_los\" is neither an objective nor a constraint metric (did you mean eval_loss?)"),
        "{stderr}"
    );
    ok(&d, &["submit", f.to_str().unwrap()]);
    let t = ask(&d, "p");
    for step in 1..=4 {
        ok(
            &d,
            &[
                "report",
                "p",
                &t,
                "--step",
                &step.to_string(),
                "--metrics",
                &format!("{{\"eval_loss\": {}}}", 3.0 / f64::from(step)),
            ],
        );
    }
    let status = ok(&d, &["status", "p"]);
    assert!(
        status.contains("warning: pruner.metric eval_los is in none of trial 0's 3 reports (they carry eval_loss) (did you mean eval_loss?): nothing is pruned"),
        "{status}"
    );
    let s = d.json(&["status", "p"]);
    assert_eq!(s["warnings"].as_array().map(Vec::len), Some(1), "{s}");
    // Said once in the log, however many reports follow.
    ok(&d, &["tell", "p", &t, "--metrics", "{\"eval_loss\": 1}"]);
    let t2 = ask(&d, "p");
    for step in 1..=4 {
        ok(
            &d,
            &[
                "report",
                "p",
                &t2,
                "--step",
                &step.to_string(),
                "--metrics",
                "{\"eval_loss\": 1}",
            ],
        );
    }
    assert_eq!(
        d.log().matches("is in none of trial").count(),
        1,
        "{}",
        d.log()
    );
}

#[test]
fn a_study_whose_every_trial_failed_ends_failed_and_its_output_is_one_command_away() {
    let d = Daemon::start(1, "");
    let f = d.write(
        "broken.toml",
        &common::study_toml(
            "broken",
            &common::objective_command(),
            3,
            1,
            "[trial.env]\nMODE = \"fail\"\n",
        ),
    );
    ok(&d, &["submit", f.to_str().unwrap()]);
    assert_eq!(d.wait_study("broken", Duration::from_secs(60)), "failed");
    let s = d.json(&["status", "broken"]);
    assert_eq!(
        s["message"], "every trial failed; the first, trial 0: exit status 1",
        "{s}"
    );
    let status = ok(&d, &["status", "broken"]);
    assert!(
        status
            .contains("first failure: trial 0: exit status 1; its output: quantune logs broken 0"),
        "{status}"
    );
    let studies = ok(&d, &["studies"]);
    assert!(
        studies.contains("failed") && studies.contains("every trial failed"),
        "{studies}"
    );
    // The reason line points at `quantune logs`, which has the trial's stderr.
    let out = d.cli(&["trials", "broken"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("quantune logs broken"),
        "{}",
        text(&out)
    );
    let out = d.cli(&["logs", "broken", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "boom: trial 0 failed on purpose\n"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let out = d.cli(&["logs", "broken", "0", "--attempt", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("has attempts 1 to 1"), "{}", text(&out));
    let out = d.cli(&["logs", "broken", "9"]);
    assert!(text(&out).contains("has no trial 9"), "{}", text(&out));
}

#[test]
fn run_of_a_study_whose_every_trial_fails_exits_1_and_names_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.toml");
    std::fs::write(
        &f,
        common::study_toml(
            "broken-run",
            &common::objective_command(),
            2,
            1,
            "[trial.env]\nMODE = \"fail\"\n",
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let out = Command::new(bin())
        .arg("run")
        .arg(&f)
        .arg("--state")
        .arg(&state)
        .args(["--cpu-slots", "1"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "study 'broken-run': failed (every trial failed; the first, trial 0: exit status 1)"
        ),
        "{t}"
    );
    let log = state.join("trials/broken-run/0/stderr.1.log");
    assert!(
        t.contains(&format!("trial 0 failed; its stderr: {}", log.display())),
        "{t}"
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("boom"));
}

#[test]
fn logs_come_whole_in_bounded_pieces_and_follow_a_running_trial() {
    let d = Daemon::start(1, "");
    let f = d.write("loud.toml", &noisy_study("loud", 1, "LINES = \"8000\"\n"));
    ok(&d, &["submit", f.to_str().unwrap()]);
    assert_eq!(d.wait_study("loud", Duration::from_secs(60)), "completed");
    let out = d.cli(&["logs", "loud", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    let want =
        |tag: &str, c: char| -> String { (1..=8000).map(|i| format!("{tag} {i} {c}\n")).collect() };
    // Both are larger than one reply (64 KiB): pieced together, byte for byte.
    assert!(want("out", 'é').len() > 64 << 10);
    assert!(String::from_utf8(out.stdout.clone()).unwrap() == want("out", 'é'));
    assert!(String::from_utf8(out.stderr.clone()).unwrap() == want("err", 'ü'));
    let out = d.cli(&["logs", "loud", "0", "--stream", "stderr"]);
    assert!(out.stdout.is_empty() && out.stderr.len() == want("err", 'ü').len());

    // One reply is bounded whatever the client asks for.
    let (status, body) = unix_get(
        &d.socket,
        "/v1/studies/loud/trials/0/logs?stream=stdout&offset=10&limit=100000000",
    );
    assert_eq!(status, 200, "{body}");
    let piece: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(piece["offset"], 10);
    assert!(
        piece["next_offset"].as_u64().unwrap() - 10 <= 256 << 10,
        "{piece}"
    );
    assert_eq!(piece["size"].as_u64(), Some(want("out", 'é').len() as u64));
    let (status, body) = unix_get(&d.socket, "/v1/studies/loud/trials/0/logs?stream=both");
    assert_eq!(status, 400, "{body}");

    // --follow prints what a running attempt writes, and returns when it ends.
    let f = d.write(
        "slow.toml",
        &noisy_study("slow", 1, "LINES = \"6\"\nSLOW = \"1\"\n"),
    );
    ok(&d, &["submit", f.to_str().unwrap()]);
    wait_for(Duration::from_secs(30), "trial 0 running", || {
        (d.trials("slow").first()?["state"] == "running").then_some(())
    });
    let mut follow = Command::new(bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["logs", "slow", "0", "--follow", "--stream", "stderr"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    follow
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(follow.wait().unwrap().success());
    let want: String = (1..=6).map(|i| format!("err {i} ü\n")).collect();
    assert_eq!(err, want);
    assert_eq!(d.wait_study("slow", Duration::from_secs(30)), "completed");
}

#[test]
fn studies_and_status_count_every_final_state() {
    let d = Daemon::start(1, "");
    let pruner = "[pruner]\nkind = \"median\"\nmin_trials = 1\nwarmup_steps = 0\n";
    let f = d.write("mix.toml", &external_study("mix", LOSS, pruner, 5));
    ok(&d, &["submit", f.to_str().unwrap()]);
    let report = |t: &str, step: u64, loss: f64| {
        ok(
            &d,
            &[
                "report",
                "mix",
                t,
                "--step",
                &step.to_string(),
                "--metrics",
                &format!("{{\"loss\": {loss}}}"),
            ],
        )
    };
    for _ in 0..2 {
        let t = ask(&d, "mix");
        report(&t, 1, 1.0);
        ok(&d, &["tell", "mix", &t, "--metrics", "{\"loss\": 1}"]);
    }
    let t = ask(&d, "mix");
    assert!(report(&t, 1, 100.0).contains("true"), "not pruned");
    let t = ask(&d, "mix");
    ok(&d, &["tell", "mix", &t, "--infeasible", "out of memory"]);
    let t = ask(&d, "mix");
    ok(&d, &["tell", "mix", &t, "--failed", "exit status 1"]);
    let table = ok(&d, &["studies"]);
    let lines: Vec<&str> = table.lines().collect();
    let cols: Vec<&str> = lines[0].split_whitespace().collect();
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    let cell = |h: &str| {
        row[cols
            .iter()
            .position(|c| *c == h)
            .unwrap_or_else(|| panic!("no {h} column: {table}"))]
    };
    assert_eq!(
        ["complete", "pruned", "infeasible", "failed"].map(cell),
        ["2", "1", "1", "1"],
        "{table}"
    );
    let status = ok(&d, &["status", "mix"]);
    assert!(status.starts_with(lines[0]), "{status}");
    // An ask/tell trial's output is with its worker: no `quantune logs` pointer.
    assert!(
        status.contains("first failure: trial 4: exit status 1\n")
            && !status.contains("quantune logs"),
        "{status}"
    );
    let s = d.json(&["status", "mix"]);
    for (k, n) in [
        ("complete", 2),
        ("pruned", 1),
        ("infeasible", 1),
        ("failed", 1),
    ] {
        assert_eq!(s["counts"][k], n, "{s}");
    }
}

#[test]
fn every_view_names_the_same_best_trade_off() {
    let d = Daemon::start(1, "");
    let two = "[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\n\
               [[objective]]\nmetric = \"latency\"\ndirection = \"minimize\"\n";
    let f = d.write("two.toml", &external_study("two", two, "", 3));
    ok(&d, &["submit", f.to_str().unwrap()]);
    // All three on the front; the first objective favours trial 0, the largest hypervolume
    // contribution is trial 1's.
    for (loss, latency) in [(0.0, 10.0), (1.0, 1.0), (10.0, 0.0)] {
        let t = ask(&d, "two");
        let m = format!("{{\"loss\": {loss}, \"latency\": {latency}}}");
        ok(&d, &["tell", "two", &t, "--metrics", &m]);
    }
    assert_eq!(d.wait_study("two", Duration::from_secs(30)), "completed");
    let status = d.json(&["status", "two"]);
    assert_eq!(status["best"]["trial"], 1, "{status}");
    let text_status = ok(&d, &["status", "two"]);
    assert!(text_status.contains("best: trial 1 "), "{text_status}");
    let watch = ok(&d, &["watch", "two", "--format", "json"]);
    let screen: Value = serde_json::from_str(watch.lines().next().unwrap()).unwrap();
    assert_eq!(screen["study"]["best"]["trial"], 1, "{screen}");
    let best_rows: Vec<&Value> = screen["leaderboard"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["best"] == true)
        .collect();
    assert_eq!(best_rows.len(), 1, "{screen}");
    assert_eq!(best_rows[0]["trial"], 1, "{screen}");
    let board = ok(&d, &["leaderboard", "two"]);
    let noted: Vec<&str> = board.lines().filter(|l| l.contains("best")).collect();
    assert_eq!(noted.len(), 1, "{board}");
    assert_eq!(noted[0].split_whitespace().nth(1), Some("1"), "{board}");
    let (code, metrics) = unix_get(&d.socket, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("quantune_study_best_trial{study=\"two\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn an_unknown_curve_metric_lists_the_reported_ones() {
    let d = Daemon::start(1, "");
    let f = d.write("c.toml", &external_study("c", LOSS, "", 2));
    ok(&d, &["submit", f.to_str().unwrap()]);
    let t = ask(&d, "c");
    ok(
        &d,
        &[
            "report",
            "c",
            &t,
            "--step",
            "1",
            "--metrics",
            "{\"eval_loss\": 2, \"loss\": 3}",
        ],
    );
    let out_file = d.dir.path().join("c.svg");
    let out = d.cli(&[
        "plot",
        "c",
        "--kind",
        "curves",
        "--metric",
        "eval_los",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--metric eval_los: no report of study 'c' has this metric (did you mean eval_loss?); reported metrics: eval_loss, loss"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("no intermediate reports"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_wrong_token_reads_differently_from_a_missing_one() {
    const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut d = Daemon::prepare(1, "");
    let token_file = d.write("token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!(
            "{cfg}\n[tcp]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    d.spawn();
    let url = format!("http://127.0.0.1:{port}");
    let cli = |token: Option<&str>| {
        let mut c = Command::new(bin());
        c.args(["--url", &url, "studies"])
            .env_remove("QUANTUNE_TOKEN");
        if let Some(t) = token {
            c.env("QUANTUNE_TOKEN", t);
        }
        c.output().unwrap()
    };
    let missing = cli(None);
    let wrong = cli(Some("not-the-token-at-all"));
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(wrong.status.code(), Some(1));
    let (missing, wrong) = (text(&missing), text(&wrong));
    assert!(
        missing.contains(&format!(
            "the daemon at {url} refused the request: no token"
        )),
        "{missing}"
    );
    assert!(missing.contains("Authorization: Bearer"), "{missing}");
    assert!(wrong.contains("wrong token: the `Authorization: Bearer` token sent is not the one in the daemon's tcp.token_file"), "{wrong}");
    assert_ne!(missing, wrong);
    assert!(cli(Some(TOKEN)).status.success());
}

/// `GET path` over the daemon's Unix socket: status and body.
fn unix_get(socket: &Path, path: &str) -> (u16, String) {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: quantune\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let mut body = buf[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, String::from_utf8(body).expect("a UTF-8 body"))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let start = eol + 2;
        if n == 0 || rest.len() < start + n {
            break;
        }
        out.extend_from_slice(&rest[start..start + n]);
        rest = &rest[(start + n + 2).min(rest.len())..];
    }
    out
}
