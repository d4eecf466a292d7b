//! Managing studies through the real binary: `delete` (running trials stopped first, records
//! gone, durable across kill -9), `extend` (a completed study runs on), `import --as` and
//! `copy` (independent studies), and tags and notes (shown in tables and JSON, kept across a
//! restart and an export/import).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(60);

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn submit(d: &Daemon, file: &str, toml: &str) {
    let f = d.write(file, toml);
    let out = d.cli(&["submit", path_str(&f)]);
    assert!(out.status.success(), "submit {file} failed: {}", text(&out));
}

/// Runs a CLI command that must fail; returns its stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        !out.status.success(),
        "quantune {args:?} should fail: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a CLI command that must succeed; returns its stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "quantune {args:?} failed: {}\n{}",
        text(&out),
        d.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn params(trials: &[Value]) -> Vec<Value> {
    trials.iter().map(|t| t["params"].clone()).collect()
}

fn open_store(d: &Daemon) -> quantune_state::Store {
    quantune_state::Store::open(&d.state_dir().join("store")).expect("open the daemon's store")
}

#[test]
fn delete_stops_the_running_trial_frees_its_slot_and_removes_every_record() {
    let mut d = Daemon::start(1, "");
    let command = r#"["sh", "-c", "echo $$ > pid_{trial}; exec sleep 300"]"#;
    let extra = format!("working_dir = {:?}", path_str(d.dir.path()));
    submit(
        &d,
        "slow.toml",
        &study_toml_full("slow", command, 3, 1, "", "5m", &extra),
    );
    let pidfile = d.dir.path().join("pid_0");
    let pid: u32 = wait_for(FINISH, "trial 0's pid file", || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    assert!(pid_alive(pid));

    // Without --yes and without a terminal to ask on: refused, nothing changes.
    let err = fails(&d, &["delete", "slow"]);
    assert!(
        err.contains("--yes") && err.contains("not a terminal"),
        "{err}"
    );
    assert_eq!(d.json(&["status", "slow"])["state"], "running");
    assert!(pid_alive(pid), "a refused delete must not stop the trial");
    let err = fails(&d, &["delete", "nope", "--yes"]);
    assert!(err.contains("no study named 'nope'"), "{err}");

    let out = ok(&d, &["delete", "slow", "--yes"]);
    assert!(out.contains("deleted study 'slow' (1 trial(s))"), "{out}");
    wait_for(
        Duration::from_secs(10),
        "the trial's process to end",
        || (!pid_alive(pid)).then_some(()),
    );
    let err = fails(&d, &["status", "slow"]);
    assert!(err.contains("no study named 'slow'"), "{err}");
    let studies = d.json(&["studies"]);
    assert_eq!(studies.as_array().unwrap().len(), 0, "{studies:#}");
    assert!(!d.json(&["status"])["studies"]
        .to_string()
        .contains("\"slow\""));

    // Its one slot is free: another study runs to the end on it.
    let cmd = objective_command();
    submit(&d, "fast.toml", &study_toml("fast", &cmd, 2, 1, ""));
    assert_eq!(d.wait_study("fast", FINISH), "completed");
    // And the name is free again once the purge is done.
    let again = d.write(
        "slow2.toml",
        &study_toml("slow", &objective_command(), 1, 1, ""),
    );
    wait_for(
        Duration::from_secs(10),
        "the name 'slow' to be free",
        || {
            d.cli(&["submit", path_str(&again)])
                .status
                .success()
                .then_some(())
        },
    );
    assert_eq!(d.wait_study("slow", FINISH), "completed");
    let trials = d.trials("slow");
    assert_eq!(trials.len(), 1, "the new 'slow' starts empty: {trials:#?}");
    assert_ne!(trials[0]["reason"], "study cancelled");

    // In the store: the old study's records are gone, the new one's are there.
    ok(&d, &["delete", "slow", "--yes"]);
    wait_for(Duration::from_secs(10), "the purge to finish", || {
        d.json(&["studies"])
            .as_array()
            .is_some_and(|a| a.len() == 1)
            .then_some(())
    });
    assert!(d.stop());
    let store = open_store(&d);
    assert!(store.study("slow").unwrap().is_none());
    assert!(store.trials("slow").unwrap().is_empty());
    assert!(store.events(Some("slow"), 10).unwrap().is_empty());
    assert!(store.pending_purges().unwrap().is_empty());
    assert_eq!(store.trials("fast").unwrap().len(), 2);
    assert!(
        !d.state_dir().join("trials").join("slow").exists(),
        "the deleted study's run directories stay behind"
    );
}

/// An export of one external study with `n` complete trials of three reports each.
fn big_export(d: &Daemon, n: u64) -> std::path::PathBuf {
    let toml = r#"[study]
name = "seed-ext"
seed = 3

[[objective]]
metric = "loss"
direction = "minimize"

[space.x]
type = "float"
low = 0.0
high = 1.0

[budget]
max_trials = 1

[trial]
workload = "external"
"#;
    submit(d, "ext.toml", toml);
    let a = d.json(&["ask", "seed-ext"]);
    assert_eq!(a["trial"], 0);
    for step in 1..=3 {
        ok(
            d,
            &[
                "report",
                "seed-ext",
                "0",
                "--step",
                &step.to_string(),
                "--metrics",
                r#"{"loss": 1.5}"#,
            ],
        );
    }
    ok(
        d,
        &["tell", "seed-ext", "0", "--metrics", r#"{"loss": 1.0}"#],
    );
    let out = d.dir.path().join("seed.jsonl");
    ok(d, &["export", "seed-ext", "--out", path_str(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let study = lines.next().unwrap().to_string();
    let trial: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let mut big = study.replacen("\"max_trials\":1", &format!("\"max_trials\":{n}"), 1);
    big.push('\n');
    for i in 0..n {
        let mut t = trial.clone();
        t["trial"]["number"] = i.into();
        big.push_str(&t.to_string());
        big.push('\n');
    }
    let path = d.dir.path().join("big.jsonl");
    std::fs::write(&path, big).unwrap();
    path
}

#[test]
fn a_daemon_killed_during_a_delete_finishes_it_at_the_next_start() {
    let mut d = Daemon::start(1, "");
    let big = big_export(&d, 6000);
    // Killed at once after the delete is acknowledged, the purge of its 24,000 records
    // (reports, trials, events; flushed 2,000 at a time) is cut short; the next start must
    // finish it. Tried until the log shows a cut (the purge may win the race now and then).
    let resumed = "finished deleting study 'big'";
    for attempt in 0..3 {
        let out = ok(&d, &["import", "--as", "big", path_str(&big)]);
        assert!(out.contains("6000"), "{out}");
        assert_eq!(d.trials("big").len(), 6000);
        ok(&d, &["delete", "big", "--yes"]);
        d.kill9();
        d.spawn();
        let err = fails(&d, &["status", "big"]);
        assert!(err.contains("no study named 'big'"), "{err}");
        assert_eq!(d.trials("seed-ext").len(), 1, "the other study is intact");
        if d.log().contains(resumed) {
            break;
        }
        assert!(
            attempt < 2,
            "no delete was cut short by kill -9:\n{}",
            d.log()
        );
    }
    // The name is free at once after the restart: no leftovers to leak into a new study.
    let out = ok(&d, &["import", "--as", "big", path_str(&big)]);
    assert!(out.contains("6000"), "{out}");
    let t = d.trials("big");
    assert!(
        t.iter().all(|t| t["state"] == "complete"),
        "only the import's trials"
    );
    ok(&d, &["delete", "big", "--yes"]);
    assert!(d.stop());
    let store = open_store(&d);
    assert!(store.pending_purges().unwrap().is_empty());
    assert!(store.trials("big").unwrap().is_empty());
    assert!(store.reports("big", 5).unwrap().is_empty());
    assert_eq!(store.reports("seed-ext", 0).unwrap().len(), 3);
}

#[test]
fn extend_runs_a_completed_study_on_from_its_history() {
    let d = Daemon::start(1, "");
    let cmd = objective_command();
    submit(&d, "a.toml", &study_toml("grown", &cmd, 2, 1, ""));
    submit(&d, "b.toml", &study_toml("whole", &cmd, 4, 1, ""));
    assert_eq!(d.wait_study("grown", FINISH), "completed");
    let first = d.trials("grown");
    assert_eq!(first.len(), 2);

    let err = fails(&d, &["extend", "grown", "--max-trials", "1"]);
    assert!(err.contains("extend only raises"), "{err}");
    let err = fails(&d, &["extend", "grown"]);
    assert!(err.contains("--max-trials"), "{err}");
    let s = d.json(&["extend", "grown", "--max-trials", "4"]);
    assert_eq!(s["state"], "running", "{s:#}");
    assert_eq!(s["max_trials"], 4);
    assert_eq!(d.wait_study("grown", FINISH), "completed");
    let grown = d.trials("grown");
    assert_eq!(grown.len(), 4);
    assert_eq!(count_state(&grown, "complete"), 4, "{grown:#?}");
    assert_eq!(params(&grown[..2]), params(&first), "old trials untouched");
    // The strategy went on from its history: the same trials as a study of 4 from the start.
    assert_eq!(d.wait_study("whole", FINISH), "completed");
    assert_eq!(params(&grown), params(&d.trials("whole")));
    assert_eq!(d.json(&["status", "grown"])["max_trials"], 4);

    // A cancelled study stays ended.
    ok(
        &d,
        &["extend", "whole", "--max-trials", "5", "--max-wall", "1h"],
    );
    let cancelled = d.write(
        "c.toml",
        &study_toml(
            "stopped",
            &cmd,
            50,
            1,
            "env = { MODE = \"sleep\", SLEEP = \"5\" }",
        ),
    );
    ok(&d, &["submit", path_str(&cancelled)]);
    ok(&d, &["cancel", "stopped"]);
    let err = fails(&d, &["extend", "stopped", "--max-trials", "60"]);
    assert!(err.contains("cancelled"), "{err}");
}

#[test]
fn the_readme_export_import_works_on_one_daemon_and_copies_are_independent() {
    let d = Daemon::start(2, "");
    let cmd = objective_command();
    submit(&d, "my.toml", &study_toml("my-study", &cmd, 3, 1, ""));
    assert_eq!(d.wait_study("my-study", FINISH), "completed");
    let file = d.dir.path().join("my-study.jsonl");
    let export = d.cli(&["export", "my-study"]);
    assert!(export.status.success());
    std::fs::write(&file, &export.stdout).unwrap();

    // The plain import names the way out.
    let err = fails(&d, &["import", path_str(&file)]);
    assert!(
        err.contains("already exists") && err.contains("--as"),
        "{err}"
    );
    // README.md: `quantune import --as my-study-2 my-study.jsonl`.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains("quantune import --as my-study-2 my-study.jsonl"),
        "README's export/import line changed; keep this test in step"
    );
    let out = ok(&d, &["import", "--as", "my-study-2", path_str(&file)]);
    assert!(out.contains("imported 3 trial(s)"), "{out}");
    let err = fails(&d, &["import", "--as", "Bad Name", path_str(&file)]);
    assert!(err.contains("not a valid study name"), "{err}");

    let out = ok(&d, &["copy", "my-study", "my-study-3"]);
    assert!(
        out.contains("copied study 'my-study' to 'my-study-3'"),
        "{out}"
    );
    let err = fails(&d, &["copy", "my-study", "my-study-2"]);
    assert!(err.contains("already exists"), "{err}");

    let original = d.trials("my-study");
    for name in ["my-study-2", "my-study-3"] {
        let t = d.trials(name);
        assert_eq!(params(&t), params(&original), "{name}");
        assert_eq!(d.json(&["status", name])["state"], "completed");
    }
    // Independent: changing a copy leaves the original alone, and back.
    ok(&d, &["extend", "my-study-3", "--max-trials", "5"]);
    ok(&d, &["note", "my-study-3", "0", "only in the copy"]);
    ok(&d, &["tag", "my-study-3", "+copy"]);
    assert_eq!(d.wait_study("my-study-3", FINISH), "completed");
    assert_eq!(d.trials("my-study-3").len(), 5);
    let orig = d.json(&["status", "my-study"]);
    assert_eq!(orig["max_trials"], 3);
    assert_eq!(orig["tags"], serde_json::json!([]));
    assert_eq!(d.trials("my-study").len(), 3);
    assert!(d.trials("my-study")[0].get("note").is_none());
    ok(&d, &["delete", "my-study", "--yes"]);
    assert_eq!(d.trials("my-study-2").len(), 3);
    assert_eq!(d.trials("my-study-3").len(), 5);
}

#[test]
fn tags_and_notes_show_everywhere_and_survive_a_restart_and_an_export() {
    let mut d = Daemon::start(1, "");
    let cmd = objective_command();
    let bad = study_toml("tagged", &cmd, 2, 1, "")
        .replace("seed = 1\n", "seed = 1\ntags = [\"ok\", \"not ok\"]\n");
    let f = d.write("bad.toml", &bad);
    let err = fails(&d, &["validate", path_str(&f)]);
    assert!(
        err.contains("bad.toml:4")
            && err.contains("study.tags[1]")
            && err.contains("not a valid tag"),
        "{err}"
    );
    let toml = study_toml("tagged", &cmd, 2, 1, "").replace(
        "seed = 1\n",
        "seed = 1\ntags = [\"baseline\", \"int4\"]\nnotes = \"first try\"\n",
    );
    submit(&d, "tagged.toml", &toml);
    submit(&d, "plain.toml", &study_toml("plain", &cmd, 1, 1, ""));
    assert_eq!(d.wait_study("tagged", FINISH), "completed");

    let table = ok(&d, &["studies"]);
    assert!(
        table.contains("tags") && table.contains("baseline,int4"),
        "{table}"
    );
    let only: Vec<Value> = d
        .json(&["studies", "--tag", "int4"])
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["name"], "tagged");
    assert_eq!(only[0]["notes"], "first try");
    assert!(d
        .json(&["studies", "--tag", "nope"])
        .as_array()
        .unwrap()
        .is_empty());

    let out = ok(&d, &["tag", "tagged", "+new", "-int4"]);
    assert!(out.contains("baseline, new"), "{out}");
    let err = fails(&d, &["tag", "tagged", "+bad tag"]);
    assert!(err.contains("not a valid tag"), "{err}");
    ok(&d, &["note", "tagged", "second try"]);
    ok(&d, &["note", "tagged", "1", "loss spike at step 300"]);
    let err = fails(&d, &["note", "tagged", "9", "x"]);
    assert!(err.contains("no trial 9"), "{err}");

    let check = |d: &Daemon, name: &str| {
        let s = d.json(&["status", name]);
        assert_eq!(s["tags"], serde_json::json!(["baseline", "new"]), "{s:#}");
        assert_eq!(s["notes"], "second try");
        let status = ok(d, &["status", name]);
        assert!(status.contains("notes: second try"), "{status}");
        let t = d.trials(name);
        assert_eq!(t[1]["note"], "loss spike at step 300");
        assert!(t[0].get("note").is_none());
        let trials = ok(d, &["trials", name]);
        assert!(trials.contains("loss spike at step 300"), "{trials}");
        let board = ok(d, &["leaderboard", name]);
        assert!(board.contains("loss spike at step 300"), "{board}");
        let rows = d.leaderboard(name);
        assert!(
            rows.iter().any(|r| r["note"] == "loss spike at step 300"),
            "{rows:#?}"
        );
    };
    check(&d, "tagged");
    assert!(d.stop());
    d.spawn();
    check(&d, "tagged");
    let file = d.dir.path().join("tagged.jsonl");
    ok(&d, &["export", "tagged", "--out", path_str(&file)]);
    ok(&d, &["import", "--as", "tagged-2", path_str(&file)]);
    check(&d, "tagged-2");
    // An empty note removes it.
    ok(&d, &["note", "tagged-2", "1", ""]);
    assert!(d.trials("tagged-2")[1].get("note").is_none());
    assert_eq!(d.trials("tagged")[1]["note"], "loss spike at step 300");
}

/// `quantune --socket S args…` run on a pseudo-terminal (util-linux `script`), `input` typed.
fn on_terminal(d: &Daemon, args: &str, input: &str) -> std::process::Output {
    use std::io::Write;
    let cmd = format!("{} --socket {} {args}", bin().display(), d.socket.display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn delete_asks_on_a_terminal_and_deletes_only_on_yes() {
    let d = Daemon::start(1, "");
    submit(
        &d,
        "asked.toml",
        &study_toml("asked", &objective_command(), 1, 1, ""),
    );
    assert_eq!(d.wait_study("asked", FINISH), "completed");
    let out = on_terminal(&d, "delete asked", "n\n");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("delete study 'asked'") && said.contains("[y/N]"),
        "{said}"
    );
    assert!(said.contains("was not deleted"), "{said}");
    assert_eq!(d.json(&["status", "asked"])["state"], "completed");
    let out = on_terminal(&d, "delete asked", "y\n");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("deleted study 'asked'"),
        "{}",
        text(&out)
    );
    assert!(fails(&d, &["status", "asked"]).contains("no study named"));
}
