//! Seeing and seeding a study through the real daemon and CLI: plots of every kind (SVG and PNG)
//! with failed, pruned and infeasible trials present, parameter importance, import of a folder
//! of benchmark result files (every bad row reported by file and line), enqueue, watch, colours,
//! completions and the man page.

mod common;

use common::*;
use quantune::view::plot::overlay::{inside, overlap, read_boxes, read_trials};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "quantune {args:?} failed: {}\n{}",
        text(&out),
        d.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A QAT-shaped external study: learning rate, batch size, format; latency (and throughput
/// with `objectives = 2`); a quality constraint; a median pruner on `eval_loss`.
fn qat_study(name: &str, objectives: usize, max_trials: u64) -> String {
    let second = if objectives > 1 {
        "[[objective]]\nmetric = \"throughput_tok_s\"\ndirection = \"maximize\"\n"
    } else {
        ""
    };
    format!(
        r#"[study]
name = "{name}"
seed = 5

[[objective]]
metric = "latency_ms"
direction = "minimize"
{second}
[[constraint]]
metric = "eval_loss_delta"
max = 0.05

[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-3
log = true

[space.batch_size]
type = "int"
values = [8, 16, 32, 64]

[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4"]

[strategy]
kind = "random"

[budget]
max_trials = {max_trials}
parallel = 1
max_failed = 100

[trial]
workload = "external"
timeout = "10m"

[pruner]
kind = "median"
metric = "eval_loss"
min_trials = 2
"#
    )
}

fn submit(d: &Daemon, name: &str, toml: &str) {
    let f = d.write(&format!("{name}.toml"), toml);
    ok(d, &["submit", path_str(&f)]);
}

fn ask(d: &Daemon, study: &str) -> (u64, Value) {
    let out = d.cli(&["ask", study]);
    assert!(out.status.success(), "ask: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["trial"].as_u64().unwrap(), v["params"].clone())
}

/// A made-up benchmark: latency by format (the planted important parameter), throughput from
/// it, quality loss growing with the learning rate's distance from 3e-4.
fn bench(p: &Value) -> (f64, f64, f64) {
    let q = p["quantization"].as_str().unwrap();
    let lr = p["learning_rate"].as_f64().unwrap();
    let bs = p["batch_size"].as_f64().unwrap();
    let lat = match q {
        "bf16" => 20.0,
        "int8" => 13.0,
        _ => 9.0,
    } + bs / 640.0;
    let delta = ((lr.ln() - 3e-4f64.ln()).abs() * 0.004).min(0.04);
    (lat, 1000.0 / lat, delta)
}

/// Runs `n` trials of an external study by ask/report/tell, every eighth trial by kind:
/// failed, pruned (a terrible curve), declared infeasible, and breaking the constraint.
fn drive(d: &Daemon, study: &str, n: u64) {
    for i in 0..n {
        let (trial, p) = ask(d, study);
        let t = trial.to_string();
        let (lat, tok, delta) = bench(&p);
        let kind = i % 8;
        let mut pruned = false;
        for step in 1..=3u64 {
            let loss = if kind == 5 {
                50.0
            } else {
                3.0 / step as f64 + delta
            };
            let m = format!("{{\"eval_loss\": {loss}}}");
            let r = ok(
                d,
                &[
                    "report",
                    study,
                    &t,
                    "--step",
                    &step.to_string(),
                    "--metrics",
                    &m,
                ],
            );
            if r.contains("true") {
                pruned = true;
                break;
            }
        }
        if pruned {
            continue;
        }
        let metrics = format!(
            "{{\"latency_ms\": {lat}, \"throughput_tok_s\": {tok}, \"eval_loss_delta\": {delta}}}"
        );
        let bad_quality = format!(
            "{{\"latency_ms\": {lat}, \"throughput_tok_s\": {tok}, \"eval_loss_delta\": 0.2}}"
        );
        let args: Vec<&str> = match kind {
            3 => vec!["tell", study, &t, "--failed", "exit status 1"],
            6 => vec!["tell", study, &t, "--infeasible", "out of memory"],
            7 => vec!["tell", study, &t, "--metrics", &bad_quality],
            _ => vec!["tell", study, &t, "--metrics", &metrics],
        };
        ok(d, &args);
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    // IHDR: width and height, big-endian, at bytes 16..24.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (800, 500), "{}", path.display());
}

#[test]
fn plots_render_for_live_studies_with_failed_pruned_and_infeasible_trials() {
    let d = Daemon::start(1, "");
    for objectives in [1usize, 2] {
        let name = format!("plots{objectives}");
        submit(&d, &name, &qat_study(&name, objectives, 40));
        drive(&d, &name, 24);
        let trials = d.trials(&name);
        for state in ["complete", "failed", "pruned", "infeasible"] {
            assert!(
                count_state(&trials, state) >= 1,
                "setup: no {state} trial in {trials:#?}"
            );
        }
        for kind in ["history", "pareto", "parallel", "importance", "curves"] {
            let svg = d.dir.path().join(format!("{name}-{kind}.svg"));
            let png = d.dir.path().join(format!("{name}-{kind}.png"));
            if kind == "pareto" && objectives == 1 {
                let out = d.cli(&["plot", &name, "--kind", kind, "--out", path_str(&svg)]);
                assert_eq!(out.status.code(), Some(1), "{}", text(&out));
                assert!(text(&out).contains("needs two"), "{}", text(&out));
                continue;
            }
            let said = ok(
                &d,
                &["plot", &name, "--kind", kind, "--out", path_str(&svg)],
            );
            assert!(said.contains(&format!("wrote the {kind} plot")), "{said}");
            let doc = std::fs::read_to_string(&svg).unwrap();
            assert!(
                doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"),
                "{kind}"
            );
            assert!(doc.contains(&name), "{kind}: the title names the study");
            ok(
                &d,
                &[
                    "plot",
                    &name,
                    "--kind",
                    kind,
                    "--out",
                    path_str(&png),
                    "--size",
                    "800x500",
                ],
            );
            assert_png(&png);
        }
        let history =
            std::fs::read_to_string(d.dir.path().join(format!("{name}-history.svg"))).unwrap();
        for label in [
            "failed, no value (",
            "pruned, no value (",
            "infeasible (",
            "best so far",
        ] {
            assert!(history.contains(label), "history of {name} lacks {label:?}");
        }
        let curves =
            std::fs::read_to_string(d.dir.path().join(format!("{name}-curves.svg"))).unwrap();
        assert!(curves.contains("eval_loss") && curves.contains("pruned ("));
        // Trials without a value sit in the strip, never on the value axis; legends are
        // outside the data area; every point names its trial.
        let data = read_boxes(&history, "qt-data");
        let strips = read_boxes(&history, "qt-strip");
        assert_eq!(data.len(), objectives, "{name}: one chart per objective");
        assert_eq!(strips.len(), objectives, "{name}: one strip per chart");
        let marks = read_trials(&history);
        for m in &marks {
            let p = m.points[0];
            let valued = matches!(m.state.as_str(), "complete" | "imported");
            if matches!(m.state.as_str(), "failed" | "pruned") || valued {
                assert_eq!(
                    data.iter().any(|b| inside(b, p)),
                    valued,
                    "{name}: {} trial {} at {p:?}; data areas {data:?}",
                    m.state,
                    m.trial
                );
                assert_eq!(strips.iter().any(|b| inside(b, p)), !valued);
            }
            assert!(
                m.label.starts_with(&format!("trial {} · ", m.trial)),
                "{}",
                m.label
            );
        }
        for state in ["failed", "pruned"] {
            let n = count_state(&trials, state);
            let drawn = marks.iter().filter(|m| m.state == state).count();
            assert_eq!(
                drawn,
                n * objectives,
                "{name}: every {state} trial, once per chart"
            );
        }
        for l in read_boxes(&history, "qt-legend") {
            assert!(
                data.iter().all(|b| !overlap(b, &l)),
                "{name}: legend {l:?} over {data:?}"
            );
        }
    }
    let pareto = std::fs::read_to_string(d.dir.path().join("plots2-pareto.svg")).unwrap();
    assert!(pareto.contains("Pareto front (") && pareto.contains("best trade-off"));
    // SVG to stdout; a bad extension; an unknown study.
    let out = d.cli(&["plot", "plots2", "--kind", "parallel", "--out", "-"]);
    assert!(out.status.success() && out.stdout.starts_with(b"<svg"));
    let out = d.cli(&["plot", "plots2", "--out", "x.gif"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(".svg or .png"), "{}", text(&out));
    let out = d.cli(&["plot", "nope", "--out", "x.svg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no study named 'nope'"),
        "{}",
        text(&out)
    );
}

#[test]
fn importance_ranks_the_planted_parameter_first() {
    let d = Daemon::start(1, "");
    // Latency depends on the format (and a little on the batch size); nothing fails.
    let toml = qat_study("planted", 1, 40).replace("kind = \"median\"", "kind = \"none\"");
    submit(&d, "planted", &toml);
    for _ in 0..40 {
        let (trial, p) = ask(&d, "planted");
        let (lat, tok, delta) = bench(&p);
        // Noise that has nothing to do with the parameters, larger than the batch-size effect.
        let lat = lat + 0.5 * (trial as f64 * 0.618_034).fract();
        let m = format!(
            "{{\"latency_ms\": {lat}, \"throughput_tok_s\": {tok}, \"eval_loss_delta\": {delta}}}"
        );
        ok(
            &d,
            &["tell", "planted", &trial.to_string(), "--metrics", &m],
        );
    }
    let v = d.json(&["importance", "planted"]);
    let first = &v[0];
    assert_eq!(first["objective"], "latency_ms");
    assert_eq!(first["method"], "ped-anova");
    assert_eq!(first["trials"], 40);
    let ranked: Vec<&str> = first["importance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["param"].as_str().unwrap())
        .collect();
    assert_eq!(ranked[0], "quantization", "{v:#}");
    let sum: f64 = first["importance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["importance"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-9, "{v:#}");
    let text_chart = ok(&d, &["importance", "planted"]);
    let first_row = text_chart.lines().nth(1).unwrap();
    assert!(
        first_row.trim_start().starts_with("quantization") && first_row.contains('#'),
        "{text_chart}"
    );
}

/// The study the result fixtures fit.
fn import_study(name: &str) -> String {
    qat_study(name, 2, 10).replace("kind = \"random\"", "kind = \"tpe\"\ninitial_trials = 4")
}

fn fixtures_expected() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixture("results-expected.json")).expect("expected rows"),
    )
    .unwrap()
}

/// `(file name, line)` of a reported location `…/file:line`.
fn location(s: &str) -> (String, u64) {
    let (path, line) = s.rsplit_once(':').expect("file:line");
    let file = Path::new(path).file_name().unwrap().to_str().unwrap();
    (file.to_string(), line.parse().expect("line number"))
}

fn close(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(1.0),
        _ => a == b,
    }
}

#[test]
fn import_round_trips_a_folder_of_json_and_csv_results() {
    let d = Daemon::start(1, "");
    submit(&d, "seeded", &import_study("seeded"));
    let folder = fixture("results");
    let mapping = fixture("results-mapping.toml");
    let expected = fixtures_expected();
    let valid = expected["valid"].as_array().unwrap();
    let invalid = expected["invalid"].as_array().unwrap();
    let files = std::fs::read_dir(&folder).unwrap().count();
    assert!(files >= 20, "{files} fixture files");

    // Bad rows block the import, and every one is named by file and line.
    let out = d.cli(&[
        "import",
        "seeded",
        path_str(&folder),
        "--mapping",
        path_str(&mapping),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut reported: BTreeMap<(String, u64), String> = BTreeMap::new();
    for l in stderr.lines().filter(|l| !l.starts_with("error:")) {
        // "<path>:<line>: <why>"
        let (loc, why) = l.split_once(": ").expect("file:line: why");
        reported.insert(location(loc), why.to_string());
    }
    assert_eq!(reported.len(), invalid.len(), "{stderr}");
    for bad in invalid {
        let key = (
            bad["file"].as_str().unwrap().to_string(),
            bad["line"].as_u64().unwrap(),
        );
        let why = reported
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} not reported:\n{stderr}"));
        let want = bad["error_contains"].as_str().unwrap();
        assert!(why.contains(want), "{key:?}: {why:?} lacks {want:?}");
    }
    assert!(stderr.contains("nothing imported") && stderr.contains("--skip-invalid"));
    assert!(d.trials("seeded").is_empty());

    // A dry run checks and stores nothing.
    let v = d.json(&[
        "import",
        "seeded",
        path_str(&folder),
        "--mapping",
        path_str(&mapping),
        "--dry-run",
        "--skip-invalid",
    ]);
    assert_eq!(v["files"].as_u64().unwrap() as usize, files);
    assert_eq!(v["valid"].as_u64().unwrap() as usize, valid.len());
    assert_eq!(v["invalid"].as_array().unwrap().len(), invalid.len());
    assert!(v["imported"].as_array().unwrap().is_empty());
    assert!(d.trials("seeded").is_empty());

    // With --skip-invalid the valid rows become imported trials.
    let v = d.json(&[
        "import",
        "seeded",
        path_str(&folder),
        "--mapping",
        path_str(&mapping),
        "--skip-invalid",
    ]);
    assert_eq!(
        v["imported"].as_array().unwrap().len(),
        valid.len(),
        "{v:#}"
    );
    let trials = d.trials("seeded");
    assert_eq!(trials.len(), valid.len());
    let by_source: BTreeMap<(String, u64), &Value> = trials
        .iter()
        .map(|t| (location(t["info"]["imported_from"].as_str().unwrap()), t))
        .collect();
    assert_eq!(by_source.len(), valid.len(), "one trial per valid row");
    for row in valid {
        let key = (
            row["file"].as_str().unwrap().to_string(),
            row["line"].as_u64().unwrap(),
        );
        let t = by_source
            .get(&key)
            .unwrap_or_else(|| panic!("row {key:?} was not imported"));
        assert_eq!(t["imported"], true, "{t:#}");
        for (k, want) in row["params"].as_object().unwrap() {
            assert!(close(&t["params"][k], want), "{key:?} {k}: {t:#}");
        }
        for (k, want) in row["metrics"].as_object().unwrap() {
            assert!(close(&t["metrics"][k], want), "{key:?} {k}: {t:#}");
        }
        let delta = row["metrics"]["eval_loss_delta"].as_f64().unwrap();
        let state = if delta > 0.05 {
            "infeasible"
        } else {
            "complete"
        };
        assert_eq!(t["state"], state, "{key:?}: {t:#}");
    }
    // Imported results cost no budget; the next trial continues the numbering and they are
    // on the leaderboard.
    let s = d.json(&["status", "seeded"]);
    assert_eq!(s["trials"], 0, "{s:#}");
    assert_eq!(s["imported"].as_u64().unwrap() as usize, valid.len());
    assert_eq!(s["state"], "running");
    assert!(s["best"].is_object(), "{s:#}");
    let (n, _) = ask(&d, "seeded");
    assert_eq!(n as usize, valid.len());
    assert_eq!(d.json(&["status", "seeded"])["trials"], 1);
    let board = d.leaderboard("seeded");
    assert!(board.iter().filter(|r| r["imported"] == true).count() > 50);

    // Export and import into another daemon: the imported flag and the sources survive.
    let export = d.dir.path().join("seeded.jsonl");
    ok(&d, &["export", "seeded", "-o", path_str(&export)]);
    let d2 = Daemon::start(1, "");
    ok(&d2, &["import", path_str(&export)]);
    let again = d2.trials("seeded");
    assert_eq!(again.len(), trials.len() + 1);
    for (a, b) in trials.iter().zip(&again) {
        assert_eq!(a["params"], b["params"]);
        assert_eq!(a["metrics"], b["metrics"]);
        assert_eq!(a["imported"], b["imported"]);
        assert_eq!(a["info"], b["info"]);
    }

    // Mapping errors are caught before any row is read.
    let out = d.cli(&["import", "seeded", path_str(&folder), "--map", "lr"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("COLUMN=NAME"), "{}", text(&out));
    let m = d.write("bad-map.toml", "[defaults]\nquantization = \"fp8\"\n");
    let out = d.cli(&[
        "import",
        "seeded",
        path_str(&folder),
        "--mapping",
        path_str(&m),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("defaults.quantization"),
        "{}",
        text(&out)
    );
    // --map needs result files.
    let out = d.cli(&["import", path_str(&export), "--map", "a=b"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn enqueued_configurations_run_first() {
    let d = Daemon::start(1, "");
    submit(&d, "queued", &qat_study("queued", 1, 3));
    let t = d.json(&[
        "enqueue",
        "queued",
        "--params",
        r#"{"learning_rate": 0.0003, "batch_size": 16, "quantization": "int4"}"#,
    ]);
    assert_eq!(t["trial"], 0);
    assert_eq!(t["state"], "queued");
    // A partial configuration is completed by the strategy; an integer is a float here.
    let t = d.json(&[
        "enqueue",
        "queued",
        "--params",
        r#"{"learning_rate": 0.0001, "quantization": "bf16"}"#,
    ]);
    assert_eq!(t["trial"], 1);
    assert!(t["params"]["batch_size"].is_i64(), "{t:#}");
    let (n, p) = ask(&d, "queued");
    assert_eq!(n, 0);
    assert_eq!(p["quantization"], "int4");
    assert_eq!(p["batch_size"], 16);
    assert_eq!(p["learning_rate"], 0.0003);
    ok(
        &d,
        &[
            "tell",
            "queued",
            "0",
            "--metrics",
            r#"{"latency_ms": 9, "eval_loss_delta": 0}"#,
        ],
    );
    let (n, p) = ask(&d, "queued");
    assert_eq!((n, p["quantization"].as_str()), (1, Some("bf16")));
    // Out of the space, unknown, or over budget: refused with a reason.
    for (params, want) in [
        (r#"{"batch_size": 12}"#, "one of 8, 16, 32, 64"),
        (r#"{"warmup": 1}"#, "not a parameter"),
        (r#"[1]"#, "invalid request body"),
    ] {
        let out = d.cli(&["enqueue", "queued", "--params", params]);
        assert_eq!(out.status.code(), Some(1), "{params}");
        assert!(text(&out).contains(want), "{params}: {}", text(&out));
    }
    d.json(&["enqueue", "queued", "--params", "{}"]);
    let out = d.cli(&["enqueue", "queued", "--params", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("budget.max_trials = 3"),
        "{}",
        text(&out)
    );
}

#[test]
fn watch_colours_completions_and_man_page() {
    let d = Daemon::start(2, "");
    submit(&d, "w", &study_toml("w", &objective_command(), 4, 2, ""));
    assert_eq!(
        d.wait_study("w", std::time::Duration::from_secs(60)),
        "completed"
    );
    // watch on a finished study prints once and exits.
    let out = ok(&d, &["watch", "w", "--interval", "1s"]);
    assert!(
        out.contains("study 'w': completed") && out.contains("rank"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colours into a pipe: {out:?}");
    let v = d.json(&["watch", "w"]);
    assert_eq!(v["study"]["name"], "w");
    assert_eq!(v["leaderboard"].as_array().unwrap().len(), 4);
    // Colours only when asked for (or on a terminal), never in JSON or CSV.
    let plain = ok(&d, &["leaderboard", "w"]);
    assert!(!plain.contains('\x1b'));
    let coloured = ok(&d, &["leaderboard", "w", "--color", "always"]);
    assert!(
        coloured.contains("\x1b[1;32m"),
        "best row in bold green: {coloured:?}"
    );
    for f in ["json", "csv"] {
        let out = ok(
            &d,
            &["leaderboard", "w", "--color", "always", "--format", f],
        );
        assert!(!out.contains('\x1b'), "{f}: {out:?}");
    }
    let out = Command::new(bin())
        .args(["leaderboard", "w", "--color", "always"])
        .arg("--socket")
        .arg(&d.socket)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains('\x1b'),
        "always wins over NO_COLOR"
    );
    // Completions and man pages come from the same definitions as --help.
    let bash = ok(&d, &["completions", "bash"]);
    for sub in ["plot", "importance", "enqueue", "watch", "import"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let zsh = ok(&d, &["completions", "zsh"]);
    assert!(zsh.contains("#compdef quantune"));
    let man = ok(&d, &["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH quantune"),
        "{}",
        &man[..200.min(man.len())]
    );
    let dir = d.dir.path().join("man");
    ok(&d, &["man", "--out-dir", path_str(&dir)]);
    for page in ["quantune.1", "quantune-plot.1", "quantune-import.1"] {
        assert!(dir.join(page).exists(), "{page} missing");
    }
    let help = ok(&d, &["plot", "--help"]);
    assert!(
        help.contains("Examples:") && help.contains("--kind"),
        "{help}"
    );
    let help = ok(&d, &["--help"]);
    assert!(help.contains("Examples:"), "{help}");
}

use std::process::Command;

#[test]
fn import_of_an_export_still_takes_one_file() {
    let d = Daemon::start(1, "");
    submit(&d, "one", &qat_study("one", 1, 2));
    let f = d.dir.path().join("one.jsonl");
    ok(&d, &["export", "one", "-o", path_str(&f)]);
    let d2 = Daemon::start(1, "");
    let out = ok(&d2, &["import", path_str(&f)]);
    assert!(out.contains("imported 0 trial(s)"), "{out}");
    let names: BTreeSet<String> = d2
        .json(&["studies"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains("one"));
    // A study name where a file is expected says how to import result files.
    let out = d2.cli(&["import", "no-such-file"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("quantune import STUDY FILES"),
        "{}",
        text(&out)
    );
}

#[test]
fn curves_of_pruned_trials_stop_at_the_prune_step_in_plot_files() {
    // Trials that write their whole curve at once: a pruned one has reported past the step
    // at which it was pruned by the time it is stopped.
    let d = Daemon::start(1, "");
    let toml = format!(
        r#"[study]
name = "cut"
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
choices = ["a"]

[strategy]
kind = "grid"
grid_points = 8

[budget]
max_trials = 8
parallel = 1

[trial]
command = ["sh", "{}", "{{x}}"]
timeout = "30s"

[pruner]
kind = "median"
min_trials = 2
"#,
        fixture("burst_curve.sh").display()
    );
    submit(&d, "cut", &toml);
    assert_eq!(
        d.wait_study("cut", std::time::Duration::from_secs(120)),
        "completed"
    );
    let trials = d.trials("cut");
    let step_of = |t: &Value| -> u64 {
        let r = t["reason"].as_str().unwrap();
        let rest = &r[r.find("at step ").unwrap() + 8..];
        rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())]
            .parse()
            .unwrap()
    };
    let pruned: Vec<(u64, u64)> = trials
        .iter()
        .filter(|t| t["state"] == "pruned")
        .map(|t| (t["trial"].as_u64().unwrap(), step_of(t)))
        .collect();
    assert!(!pruned.is_empty(), "setup: nothing pruned: {trials:#?}");
    let export: Vec<Value> = ok(&d, &["export", "cut"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let past = pruned.iter().any(|(n, step)| {
        export.iter().any(|l| {
            l["kind"] == "trial"
                && l["trial"]["number"] == *n
                && l["reports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["step"].as_u64().unwrap() > *step)
        })
    });
    assert!(past, "setup: no pruned trial reported past its prune step");
    let svg = d.dir.path().join("cut-curves.svg");
    ok(
        &d,
        &["plot", "cut", "--kind", "curves", "--out", path_str(&svg)],
    );
    let svg = std::fs::read_to_string(&svg).unwrap();
    let lines: Vec<_> = read_trials(&svg).into_iter().filter(|m| m.line).collect();
    // A complete trial's line has a point at every step 1..=8: the x pixel of each step.
    let full = lines
        .iter()
        .find(|m| m.state == "complete" && m.points.len() == 8)
        .expect("a complete curve of 8 steps");
    for (n, step) in pruned {
        let line = lines.iter().find(|m| m.trial == n).unwrap();
        let right = line.points.iter().map(|p| p.0).max().unwrap();
        let limit = full.points[step as usize - 1].0;
        assert!(
            right <= limit,
            "trial {n} pruned at step {step}: its curve runs to x={right}, past {limit}"
        );
    }
}
