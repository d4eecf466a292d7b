//! CLI manners through the real binary: a closed pipe ends every command quietly, tables and
//! progress lines fit the width, numbers in messages are short, every `--help` ends with the
//! examples docs/CLI.md and the man page carry, and the daemon's log has no colour codes when
//! it is not a terminal.

mod common;

use common::{bin, text, Daemon};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// A trial with quickstart-like parameters and more metrics than the study ranks by. Trials
/// with `quantization = "int4-awq"` report a `step_loss` that breaks its constraint (the
/// quality gate prunes them); `warmup` above 0.05 breaks the `eval_loss_delta` constraint.
/// Every value is printed with 17 significant digits.
const WIDE_TRIAL: &str = r#"#!/bin/sh
lr=$1; bs=$2; quant=$3; warmup=$4
if [ "$quant" = "int4-awq" ]; then
  echo '{"step": 1, "step_loss": 1.0123456789012345}' >> "$QUANTUNE_METRICS_FILE"
  sleep 20
  exit 0
fi
echo '{"step": 1, "step_loss": 0.5}' >> "$QUANTUNE_METRICS_FILE"
awk -v lr="$lr" -v bs="$bs" -v w="$warmup" 'BEGIN { printf "{\"latency_ms\": %.17g, \"throughput_tok_s\": %.17g, \"eval_loss_delta\": %.17g, \"step_loss\": 0.5, \"peak_gpu_memory_mib\": %.17g, \"tokens_per_joule\": %.17g, \"wall_clock_total_s\": %.17g, \"samples_per_second\": %.17g}\n", 10 + lr * 10000 + bs / 7, 1000 - lr * 50000 + bs / 3, w, 1234.56789 * bs, 3.14159265358979 / bs, 12.3456789 + bs, 98.7654321 * bs }' >> "$QUANTUNE_METRICS_FILE"
"#;

/// A study over [`WIDE_TRIAL`]: two objectives, two constraints, a quality gate.
fn wide_study(dir: &Path, name: &str, trials: u64) -> std::path::PathBuf {
    let script = dir.join("wide.sh");
    std::fs::write(&script, WIDE_TRIAL).unwrap();
    let study = format!(
        r#"[study]
name = "{name}"
seed = 3

[[objective]]
metric = "latency_ms"
direction = "minimize"

[[objective]]
metric = "throughput_tok_s"
direction = "maximize"

[[constraint]]
metric = "eval_loss_delta"
max = 0.05

[[constraint]]
metric = "step_loss"
max = 1.0

[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-3
log = true

[space.batch_size]
type = "categorical"
choices = [8, 16, 32]

[space.quantization]
type = "categorical"
choices = ["int8", "int4-awq", "fp8-e4m3"]

[space.warmup]
type = "float"
low = 0.0
high = 0.1

[pruner]
constraint_grace = 0.001

[budget]
max_trials = {trials}
parallel = 4

[trial]
command = ["sh", {script:?}, "{{learning_rate}}", "{{batch_size}}", "{{quantization}}", "{{warmup}}"]
timeout = "30s"
"#
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, study).unwrap();
    file
}

/// A daemon that has run the wide study to the end.
fn daemon_with_wide_study() -> Daemon {
    let d = Daemon::start(4, "web = true");
    let file = wide_study(d.dir.path(), "wide", 12);
    let out = d.cli(&["submit", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    d.wait_study("wide", Duration::from_secs(90));
    d
}

/// `quantune ARGS` against `d` with `COLUMNS` set (or removed).
fn cli_cols(d: &Daemon, args: &[&str], columns: Option<usize>) -> Output {
    let mut c = Command::new(bin());
    c.arg("--socket").arg(&d.socket).args(args);
    match columns {
        Some(n) => c.env("COLUMNS", n.to_string()),
        None => c.env_remove("COLUMNS"),
    };
    c.output().unwrap()
}

/// Panics unless every line of `s` is at most `width` characters.
fn assert_fits(s: &str, width: usize, what: &str) {
    for line in s.lines() {
        assert!(
            line.chars().count() <= width,
            "{what}: a line of {} characters is wider than {width}:\n{line}\n\nin:\n{s}",
            line.chars().count()
        );
    }
}

/// Numbers in `s` (after `= `) have at most four significant digits.
fn assert_short_numbers(s: &str) {
    for part in s.split("= ").skip(1) {
        let num: String = part
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-' || *c == 'e')
            .collect();
        let digits: String = num
            .split('e')
            .next()
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let significant = digits.trim_start_matches('0');
        assert!(
            significant.len() <= 4,
            "\"{num}\" has more than 4 significant digits in: {s}"
        );
    }
}

#[test]
fn tables_fit_the_width_and_numbers_are_short() {
    let d = daemon_with_wide_study();
    let trials = d.trials("wide");
    assert!(
        trials.iter().any(|t| t["state"] == "pruned"),
        "the seed gives a pruned trial: {trials:?}"
    );
    assert!(
        trials.iter().any(|t| t["state"] == "infeasible"),
        "the seed gives an infeasible trial: {trials:?}"
    );

    // Prune and infeasible reasons: four significant digits.
    for t in &trials {
        if let Some(r) = t["reason"].as_str() {
            assert_short_numbers(r);
        }
    }
    let pruned = trials.iter().find(|t| t["state"] == "pruned").unwrap();
    assert!(
        pruned["reason"]
            .as_str()
            .unwrap()
            .contains("step_loss = 1.012 at step 1"),
        "{pruned}"
    );

    // The default leaderboard fits 100 columns (no $COLUMNS, not a terminal) and shows the
    // objectives, constraints, parameters, state and note, not the other metrics.
    let out = cli_cols(&d, &["leaderboard", "wide"], None);
    assert!(out.status.success(), "{}", text(&out));
    let board = String::from_utf8_lossy(&out.stdout).to_string();
    assert_fits(&board, 100, "leaderboard");
    let header = board.lines().next().unwrap();
    // Long headers abbreviated (latency_ms → lat_ms, throughput_tok_s → thr_tok_s).
    for col in ["rank", "trial", "lat_ms", "thr_tok_s", "state", "note"] {
        assert!(header.contains(col), "{col} missing from {header}");
    }
    assert!(!header.contains("peak_gpu"), "{header}");
    assert!(board.contains("best"), "{board}");
    assert!(board.contains("--all shows every column"), "{board}");
    // …and at 160, where the names fit whole.
    let wide = cli_cols(&d, &["leaderboard", "wide"], Some(160));
    let wide = String::from_utf8_lossy(&wide.stdout).to_string();
    assert_fits(&wide, 160, "leaderboard at 160");
    let header = wide.lines().next().unwrap();
    for col in [
        "learning_rate",
        "quantization",
        "latency_ms",
        "eval_loss_delta",
        "note",
    ] {
        assert!(header.contains(col), "{col} missing from {header}");
    }
    assert!(!header.contains("peak_gpu"), "{header}");

    // --all: every column, full width; --columns: those, in order; a wrong name says which.
    let all = cli_cols(&d, &["leaderboard", "wide", "--all"], None);
    let all = String::from_utf8_lossy(&all.stdout).to_string();
    assert!(
        all.lines().next().unwrap().contains("peak_gpu_memory_mib"),
        "{all}"
    );
    assert!(all.lines().any(|l| l.chars().count() > 100), "{all}");
    let some = cli_cols(
        &d,
        &["leaderboard", "wide", "--columns", "trial,latency_ms,state"],
        None,
    );
    let some = String::from_utf8_lossy(&some.stdout).to_string();
    assert_eq!(
        some.lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["trial", "latency_ms", "state"],
        "{some}"
    );
    let bad = d.cli(&["leaderboard", "wide", "--columns", "trial,nope"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("latency_ms"),
        "{err}"
    );
    // CSV stays complete.
    let csv = d.cli(&["leaderboard", "wide", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    assert!(
        csv.lines().next().unwrap().contains("peak_gpu_memory_mib"),
        "{csv}"
    );

    // The trials table fits too.
    for width in [100, 160] {
        let t = cli_cols(&d, &["trials", "wide"], Some(width));
        assert!(t.status.success(), "{}", text(&t));
        let t = String::from_utf8_lossy(&t.stdout).to_string();
        assert_fits(&t, width, "trials");
        assert!(t.contains('…'), "the pruned trial's reason is cut: {t}");
    }

    // watch on the finished study prints one screen: every line within the width.
    for width in [100, 160] {
        let w = cli_cols(&d, &["watch", "wide"], Some(width));
        assert!(w.status.success(), "{}", text(&w));
        let w = String::from_utf8_lossy(&w.stdout).to_string();
        assert_fits(&w, width, "watch");
        assert!(w.contains("best: trial"), "{w}");
    }

    // studies --format csv: one number per cell.
    let csv = d.cli(&["studies", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| {
        row[head
            .iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("{n}: {csv}"))]
    };
    assert_eq!(col("trials"), "12", "{csv}");
    assert_eq!(col("max_trials"), "12", "{csv}");

    // export --format csv: the trials, one row each; the default stays JSON lines.
    let out = d.cli(&["export", "wide", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out));
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(csv.starts_with("trial,state,"), "{csv}");
    assert_eq!(csv.lines().count(), 13, "{csv}");
    let jsonl = d.cli(&["export", "wide"]);
    let first = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["kind"], "study");

    // The daemon's log went to a file: no colour codes in it.
    let log = d.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in the daemon log:\n{log:?}"
    );
}

/// Runs `quantune ARGS` with its stdout (or stderr) closed before it writes anything.
fn closed(
    args: &[&str],
    socket: Option<&Path>,
    close_stderr: bool,
) -> (std::process::ExitStatus, String, String) {
    let mut c = Command::new(bin());
    if let Some(s) = socket {
        c.arg("--socket").arg(s);
    }
    c.args(args).stdin(Stdio::null());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The reading end goes away at once: the first write meets a closed pipe.
    if close_stderr {
        drop(child.stderr.take());
    } else {
        drop(child.stdout.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Whether `s` ended the way a Unix tool ends on a closed pipe: killed by SIGPIPE, or exit 141.
fn closed_pipe_status(s: std::process::ExitStatus) -> bool {
    s.signal() == Some(libc::SIGPIPE) || s.code() == Some(141)
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let d = daemon_with_wide_study();
    let sock = Some(d.socket.as_path());
    for args in [
        &["trials", "wide", "--format", "json"][..],
        &["trials", "wide"],
        &["leaderboard", "wide"],
        &["leaderboard", "wide", "--format", "csv"],
        &["export", "wide"],
        &["export", "wide", "--format", "csv"],
        &["watch", "wide"],
        &["plot", "wide", "--out", "-"],
        &["studies"],
        &["status"],
        &["status", "wide"],
        &["importance", "wide"],
        &["curve", "wide", "0"],
        &["man"],
        &["completions", "bash"],
        &["leaderboard", "--help"],
        &["gpus"],
    ] {
        let (status, _, err) = closed(args, sock, false);
        assert!(
            closed_pipe_status(status) && err.is_empty(),
            "quantune {args:?} into a closed pipe: {status:?}, stderr: {err}"
        );
    }

    // `web` keeps serving when its stdout closes.
    let mut web = Command::new(bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["web", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(web.stdout.take());
    std::thread::sleep(Duration::from_millis(1500));
    let still = web.try_wait().unwrap();
    let _ = web.kill();
    let out = web.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(still.is_none(), "web ended: {still:?} {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_cuts_progress_lines_and_survives_closed_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let file = wide_study(dir.path(), "wide-run", 10);
    for width in [100, 160] {
        let state = dir.path().join(format!("state-{width}"));
        let out = Command::new(bin())
            .arg("run")
            .arg(&file)
            .arg("--state")
            .arg(&state)
            .args(["--cpu-slots", "4"])
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(lines.len(), 10, "{err}");
        assert_fits(&lines.join("\n"), width, "run progress");
        assert!(
            lines.iter().any(|l| l.ends_with('…')),
            "a long line is cut with …: {err}"
        );
        let board = String::from_utf8_lossy(&out.stdout).to_string();
        assert_fits(&board, width, "run leaderboard");
    }

    // stdout closed: the finished study prints its leaderboard into nothing and ends quietly.
    let state = dir.path().join("state-100");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ];
    let (status, _, err) = closed(&args, None, false);
    assert_eq!(status.code(), Some(141), "{status:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");

    // stderr closed: the study runs to the end without its progress lines.
    let fresh = dir.path().join("state-quiet");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--state",
        fresh.to_str().unwrap(),
        "--cpu-slots",
        "4",
    ];
    let (status, out, _) = closed(&args, None, true);
    assert!(status.success(), "{status:?}: {out}");
    assert!(out.contains("study 'wide-run': completed"), "{out}");
}

/// `quantune` followed by `args`, its stdout.
fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_help_ends_with_the_examples_the_docs_and_man_page_carry() {
    use quantune::client::examples;
    let cmd = quantune::client::cli::command();
    let mut names = vec![String::new()];
    names.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string()),
    );
    let man = stdout_of(&["man"])
        .replace("\\-", "-")
        .replace("\\*(Aq", "'");
    for name in &names {
        let lines = examples::of(name).unwrap_or_else(|| panic!("no examples for {name:?}"));
        let expected = examples::help_text(lines);
        for flag in ["-h", "--help"] {
            let mut args: Vec<&str> = Vec::new();
            if !name.is_empty() {
                args.push(name);
            }
            args.push(flag);
            let help = stdout_of(&args);
            assert!(
                help.trim_end().ends_with(expected.trim_end()),
                "quantune {name} {flag} does not end with its examples:\n{help}"
            );
            assert!(
                !help.contains("SPEC"),
                "quantune {name} {flag} cites SPEC:\n{help}"
            );
        }
        for l in lines {
            assert!(
                man.contains(l.split('#').next().unwrap().trim_end()),
                "the man page lacks {l:?}"
            );
        }
    }

    // docs/CLI.md carries the generated section (QUANTUNE_BLESS=1 rewrites it).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/CLI.md");
    let docs = std::fs::read_to_string(&path).unwrap();
    let section = examples::markdown();
    if std::env::var_os("QUANTUNE_BLESS").is_some() {
        let start = docs
            .find(examples::DOCS_BEGIN)
            .expect("begin marker in docs/CLI.md");
        let end = docs
            .find(examples::DOCS_END)
            .expect("end marker in docs/CLI.md")
            + examples::DOCS_END.len()
            + 1;
        let updated = format!(
            "{}{section}{}",
            &docs[..start],
            &docs[end.min(docs.len())..]
        );
        std::fs::write(&path, updated).unwrap();
    } else {
        assert!(
            docs.contains(&section),
            "docs/CLI.md's examples are not those of src/client/examples.rs; rerun with QUANTUNE_BLESS=1"
        );
    }

    // tell -h: its own options first, the global ones under their own heading after them.
    let help = stdout_of(&["tell", "-h"]);
    let own = help.find("--metrics").unwrap();
    let heading = help
        .find("Global options:")
        .expect("a Global options heading");
    let socket = help.find("--socket").unwrap();
    assert!(own < heading && heading < socket, "{help}");
}
