//! Conditional parameters end to end through the real binary: a study whose `group_size`
//! exists only for the int4 schemes runs with every strategy, and every trial gets exactly the
//! parameters its quantization calls for (in its argv and in `QUANTUNE_PARAMS`, checked by the
//! trial script itself, and in the stored trials); `enqueue` and `import` accept absent values
//! where the condition does not hold and refuse them where it does; the leaderboard shows `-`,
//! importance and the parallel-coordinates plot cope. The bad study files (`when_*.toml` in
//! `tests/fixtures/bad`) are refused by `validate` in `tests/bad_input.rs`.

mod common;

use common::{count_state, text, Daemon};
use serde_json::Value;
use std::time::Duration;

const FINISH: Duration = Duration::from_secs(120);

/// The trial: `sh cond_trial.sh QUANTIZATION LR [--group-size=N]`. It exits non-zero (the trial
/// fails) when the group size flag is there for a scheme without one or missing for an int4
/// scheme, or when `QUANTUNE_PARAMS` disagrees with the argv.
const TRIAL: &str = r#"#!/bin/sh
q=$1; lr=$2; shift 2
g=""
for a in "$@"; do
  case $a in
    --group-size=*) g=${a#--group-size=} ;;
    *) echo "unexpected argument $a" >&2; exit 3 ;;
  esac
done
case $q in
  int4|int8-int4) [ -n "$g" ] || { echo "no group size for $q" >&2; exit 4; } ;;
  *) [ -z "$g" ] || { echo "group size $g for $q" >&2; exit 5; } ;;
esac
case $QUANTUNE_PARAMS in
  *group_size*) [ -n "$g" ] || { echo "QUANTUNE_PARAMS has group_size, argv not" >&2; exit 6; } ;;
  *) [ -z "$g" ] || { echo "argv has group_size, QUANTUNE_PARAMS not" >&2; exit 7; } ;;
esac
awk -v q="$q" -v lr="$lr" -v g="$g" 'BEGIN {
  base = 1.0; if (q == "int8") base = 0.8; if (q == "int8-int4") base = 0.6; if (q == "int4") base = 0.3;
  pen = 0; if (g == 64) pen = 0.2; if (g == 32) pen = 0.4;
  d = log(lr) / log(10) + 3;
  printf "{\"loss\": %.17g}\n", base + pen + 0.1 * d * d
}' >> "$QUANTUNE_METRICS_FILE"
"#;

fn study(name: &str, strategy: &str, max_trials: u64, trial: &str) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 5

[[objective]]
metric = "loss"
direction = "minimize"

[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4", "int8-int4"]

[space.group_size]
type = "int"
values = [32, 64, 128]
when = {{ quantization = ["int4", "int8-int4"] }}

[space.lr]
type = "float"
low = 1e-5
high = 1e-2
log = true

[strategy]
{strategy}

[budget]
max_trials = {max_trials}
parallel = 2

[trial]
{trial}
"#
    )
}

/// Whether a trial's params hold exactly what its quantization calls for.
fn well_formed(params: &Value) -> bool {
    let q = params["quantization"].as_str().unwrap_or_default();
    let int4 = q == "int4" || q == "int8-int4";
    let keys: Vec<&String> = params
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    params.get("lr").is_some_and(Value::is_f64)
        && params.get("group_size").is_some() == int4
        && keys.len() == if int4 { 3 } else { 2 }
}

#[test]
fn every_strategy_runs_a_conditional_study() {
    let d = Daemon::start(2, "");
    let script = d.write("cond_trial.sh", TRIAL);
    let command = format!(
        "command = [\"sh\", {:?}, \"{{quantization}}\", \"{{lr}}\", \"--group-size={{group_size}}\"]\ntimeout = \"30s\"",
        script.display().to_string()
    );
    let kinds = [
        ("random", "kind = \"random\"", 12),
        ("sobol", "kind = \"sobol\"", 12),
        // 2 lr values × (bf16 + int8 + 3 group sizes × 2 int4 schemes) = 16 points.
        ("grid", "kind = \"grid\"\ngrid_points = 2", 16),
        ("tpe", "kind = \"tpe\"\ninitial_trials = 4", 14),
        ("bayes", "kind = \"bayes\"\ninitial_trials = 4", 12),
    ];
    for (kind, strategy, n) in kinds {
        let file = d.write(
            &format!("{kind}.toml"),
            &study(&format!("cond-{kind}"), strategy, n, &command),
        );
        let out = d.cli(&["validate", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("3 parameter(s) (1 conditional)"),
            "{}",
            text(&out)
        );
        let out = d.cli(&["submit", file.to_str().unwrap()]);
        assert!(out.status.success(), "{kind}: {}", text(&out));
    }
    for (kind, _, n) in kinds {
        let name = format!("cond-{kind}");
        let state = d.wait_study(&name, FINISH);
        let trials = d.trials(&name);
        assert_eq!(state, "completed", "{kind}: {trials:#?}\n{}", d.log());
        assert_eq!(trials.len() as u64, n, "{kind}");
        assert_eq!(
            count_state(&trials, "complete") as u64,
            n,
            "{kind}: every trial's argv and QUANTUNE_PARAMS matched its conditions: {trials:#?}"
        );
        for t in &trials {
            assert!(well_formed(&t["params"]), "{kind}: {:#}", t["params"]);
        }
        let with = trials
            .iter()
            .filter(|t| t["params"].get("group_size").is_some())
            .count();
        assert!(
            with > 0 && with < trials.len(),
            "{kind}: {with} of {} have a group size",
            trials.len()
        );
        if kind == "grid" {
            let mut seen: Vec<String> = trials.iter().map(|t| t["params"].to_string()).collect();
            seen.sort();
            seen.dedup();
            assert_eq!(
                seen.len(),
                16,
                "the grid visits each valid combination once"
            );
        }
    }
    // The leaderboard: `-` where a trial has no group size (text), the key left out (JSON).
    let out = d.cli(&["leaderboard", "cond-random"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let col = header
        .iter()
        .position(|h| *h == "group_size")
        .expect("a group_size column");
    let bf16 = table
        .lines()
        .find(|l| l.contains(" bf16 ") || l.contains(" int8 "))
        .unwrap_or_else(|| panic!("no bf16/int8 row:\n{table}"));
    assert_eq!(bf16.split_whitespace().nth(col), Some("-"), "{table}");
    for row in d.leaderboard("cond-random") {
        let params = if row.get("params").is_some() {
            &row["params"]
        } else {
            &row["trial"]["params"]
        };
        assert!(well_formed(params), "{row:#}");
    }
    // Importance and the parallel-coordinates plot.
    let imp = d.json(&["importance", "cond-tpe", "--quantile", "0.3"]);
    let names: Vec<&str> = imp[0]["importance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["param"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"group_size") && names.contains(&"quantization"),
        "{imp:#}"
    );
    let svg = d.dir.path().join("parallel.svg");
    let out = d.cli(&[
        "plot",
        "cond-bayes",
        "--kind",
        "parallel",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(&svg)
        .unwrap()
        .contains("group_size (when"));
}

#[test]
fn enqueue_and_import_respect_the_conditions() {
    let d = Daemon::start(1, "");
    let file = d.write(
        "ext.toml",
        &study(
            "cond-ext",
            "kind = \"random\"",
            20,
            "workload = \"external\"",
        ),
    );
    let out = d.cli(&["submit", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A group size for bf16 is refused, saying why and what to do.
    let out = d.cli(&[
        "enqueue",
        "cond-ext",
        "--params",
        r#"{"quantization": "bf16", "group_size": 64}"#,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(r#"group_size: only exists when quantization is "int4" or "int8-int4" (here quantization = "bf16"); remove it"#),
        "{}",
        text(&out)
    );
    // int4 alone gets a group size (and a learning rate) filled in; bf16 alone gets none.
    let t = d.json(&[
        "enqueue",
        "cond-ext",
        "--params",
        r#"{"quantization": "int4"}"#,
    ]);
    assert!(
        well_formed(&t["params"]) && t["params"]["group_size"].is_i64(),
        "{t:#}"
    );
    let t = d.json(&[
        "enqueue",
        "cond-ext",
        "--params",
        r#"{"quantization": "bf16", "lr": 0.001}"#,
    ]);
    assert_eq!(
        t["params"],
        serde_json::json!({"quantization": "bf16", "lr": 0.001})
    );
    // Asked trials (external workload) satisfy the conditions too.
    for _ in 0..4 {
        let t = d.json(&["ask", "cond-ext"]);
        assert!(well_formed(&t["params"]), "{t:#}");
        let n = t["trial"].to_string();
        let out = d.cli(&["tell", "cond-ext", &n, "--metrics", r#"{"loss": 1.0}"#]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // Import: an empty cell is an absent value, fine for bf16, missing for int4.
    let csv = d.write(
        "old.csv",
        "quantization,lr,group_size,loss\n\
         bf16,0.001,,1.0\n\
         int4,0.001,128,0.3\n\
         int4,0.001,,0.5\n\
         int8,0.001,64,0.8\n",
    );
    let out = d.cli(&["import", "cond-ext", csv.to_str().unwrap(), "--dry-run"]);
    let report = text(&out);
    assert!(!out.status.success(), "{report}");
    assert!(
        report.contains("old.csv:4: lacks parameter group_size"),
        "{report}"
    );
    assert!(
        report.contains(r#"old.csv:5: group_size: only exists when quantization is "int4" or "int8-int4" (here quantization = "int8"); remove it"#),
        "{report}"
    );
    assert!(
        !report.contains("old.csv:2:") && !report.contains("old.csv:3:"),
        "{report}"
    );
    let out = d.cli(&[
        "import",
        "cond-ext",
        csv.to_str().unwrap(),
        "--skip-invalid",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let imported: Vec<Value> = d
        .trials("cond-ext")
        .into_iter()
        .filter(|t| t["imported"] == true)
        .collect();
    assert_eq!(imported.len(), 2, "{imported:#?}");
    assert!(imported.iter().all(|t| well_formed(&t["params"])));
}
