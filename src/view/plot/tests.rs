//! Every plot kind renders, as SVG and PNG, for single- and multi-objective studies with
//! failed, pruned, infeasible and imported trials present.

use super::*;
use quantune_strategies::{ParamValue, Params};
use std::path::Path;

/// A study with `objectives` objectives (latency_ms min, throughput max), a quality
/// constraint, and trials in every state; pruned and complete ones have learning curves.
pub(crate) fn study(objectives: usize) -> StudyData {
    let mut toml = String::from(
        r#"[study]
name = "viz"
seed = 3
[[objective]]
metric = "latency_ms"
direction = "minimize"
"#,
    );
    if objectives > 1 {
        toml.push_str("[[objective]]\nmetric = \"throughput\"\ndirection = \"maximize\"\n");
    }
    toml.push_str(
        r#"[[constraint]]
metric = "eval_loss_delta"
max = 0.05
[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-2
log = true
[space.batch_size]
type = "int"
values = [8, 16, 32, 64]
[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4"]
[budget]
max_trials = 64
[trial]
workload = "external"
"#,
    );
    let def = crate::model::study::parse(&toml, "viz.toml", Path::new("/"), None).unwrap();
    let mut trials = Vec::new();
    let mut reports = BTreeMap::new();
    let formats = ["bf16", "int8", "int4"];
    for n in 0..30u64 {
        let lr = 1e-5 * 1000f64.powf((n as f64 * 0.37).fract());
        let q = formats[(n % 3) as usize];
        let bs = [8, 16, 32, 64][(n % 4) as usize];
        let params: Params = [
            ("learning_rate".to_string(), ParamValue::Float(lr)),
            ("batch_size".to_string(), ParamValue::Int(bs)),
            ("quantization".to_string(), ParamValue::Str(q.into())),
        ]
        .into();
        let mut t = TrialRecord::new("viz", n, params, 1000.0 + n as f64);
        t.started_at = Some(1000.0 + n as f64);
        t.finished_at = Some(1010.0 + n as f64);
        let latency = 10.0 + 5.0 * (n % 3) as f64 + (lr.ln() + 7.0).abs();
        let metrics: BTreeMap<String, f64> = [
            ("latency_ms".to_string(), latency),
            ("throughput".to_string(), 1000.0 / latency + (n % 5) as f64),
            (
                "eval_loss_delta".to_string(),
                if q == "int4" && n % 2 == 0 { 0.2 } else { 0.01 },
            ),
        ]
        .into();
        match n % 10 {
            3 => {
                t.state = TrialState::Failed;
                t.reason = Some("exit status 1".into());
            }
            5 => {
                t.state = TrialState::Pruned;
                t.reason = Some("pruned at step 2".into());
            }
            7 => {
                t.state = TrialState::Infeasible;
                t.reason = Some("out of memory".into());
            }
            _ => {
                // Constraint-violating completions are recorded as infeasible with metrics.
                t.state = if metrics["eval_loss_delta"] > 0.05 {
                    TrialState::Infeasible
                } else {
                    TrialState::Complete
                };
                t.metrics = metrics.into();
                t.imported = n < 4;
            }
        }
        if matches!(t.state, TrialState::Complete | TrialState::Pruned) {
            let steps = if t.state == TrialState::Pruned { 2 } else { 5 };
            reports.insert(
                n,
                (1..=steps)
                    .map(|s| Report {
                        step: s * 100,
                        values: [("eval_loss".to_string(), 3.0 / s as f64 + lr * 100.0)].into(),
                        at: 0.0,
                    })
                    .collect(),
            );
        }
        trials.push(t);
    }
    // One still running, without metrics.
    trials.push(TrialRecord::new(
        "viz",
        30,
        (*trials[0].params).clone(),
        2000.0,
    ));
    trials.last_mut().unwrap().state = TrialState::Running;
    StudyData {
        def,
        trials,
        reports,
    }
}

fn png_ok(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 5000,
        "suspiciously small PNG: {} bytes",
        bytes.len()
    );
}

#[test]
fn every_kind_renders_for_one_and_two_objectives() {
    let tmp = tempfile::tempdir().unwrap();
    // QUANTUNE_PLOT_DIR keeps the PNGs for a look.
    let dir = std::env::var_os("QUANTUNE_PLOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    for objectives in [1, 2] {
        let data = study(objectives);
        for kind in PlotKind::ALL {
            let opts = PlotOptions::default();
            if (kind, objectives) == (PlotKind::Pareto, 1) {
                let e = render_svg(&data, kind, &opts).unwrap_err();
                assert!(matches!(e, PlotError::NoData(_)), "{e}");
                assert!(e.to_string().contains("needs two"), "{e}");
                continue;
            }
            let svg = render_svg(&data, kind, &opts)
                .unwrap_or_else(|e| panic!("{kind:?} with {objectives} objective(s): {e}"));
            assert!(svg.starts_with("<svg"), "{kind:?}");
            assert!(svg.contains("viz"), "{kind:?}: the title names the study");
            let png = dir.join(format!("{}-{objectives}.png", kind.name()));
            render_png(&data, kind, &opts, &png).unwrap();
            png_ok(&png);
        }
    }
}

#[test]
fn history_marks_every_kind_of_trial() {
    let svg = render_svg(&study(1), PlotKind::History, &PlotOptions::default()).unwrap();
    for label in [
        "complete (",
        "imported (",
        "infeasible (",
        "failed (",
        "pruned (",
        "best so far",
    ] {
        assert!(svg.contains(label), "history lacks {label:?}");
    }
}

#[test]
fn pareto_highlights_the_front_and_marks_infeasible() {
    let svg = render_svg(&study(2), PlotKind::Pareto, &PlotOptions::default()).unwrap();
    for label in [
        "Pareto front (",
        "infeasible (",
        "best trade-off",
        "not placed:",
    ] {
        assert!(svg.contains(label), "pareto lacks {label:?}");
    }
}

#[test]
fn curves_need_reports_and_a_known_metric() {
    let mut data = study(1);
    let svg = render_svg(&data, PlotKind::Curves, &PlotOptions::default()).unwrap();
    assert!(
        svg.contains("eval_loss") && svg.contains("pruned ("),
        "curves"
    );
    let opts = PlotOptions {
        metric: Some("nope".into()),
        ..PlotOptions::default()
    };
    assert!(matches!(
        render_svg(&data, PlotKind::Curves, &opts),
        Err(PlotError::NoData(_))
    ));
    data.reports.clear();
    assert!(matches!(
        render_svg(&data, PlotKind::Curves, &PlotOptions::default()),
        Err(PlotError::NoData(_))
    ));
}

#[test]
fn a_study_without_trials_says_so() {
    let mut data = study(2);
    data.trials.clear();
    data.reports.clear();
    for kind in [PlotKind::History, PlotKind::Parallel, PlotKind::Importance] {
        let e = render_svg(&data, kind, &PlotOptions::default()).unwrap_err();
        assert!(e.to_string().contains("no trials yet"), "{kind:?}: {e}");
    }
}

#[test]
fn only_failed_trials_still_render() {
    let mut data = study(2);
    for t in &mut data.trials {
        t.state = TrialState::Failed;
        std::sync::Arc::make_mut(&mut t.metrics).clear();
    }
    for kind in [
        PlotKind::History,
        PlotKind::Pareto,
        PlotKind::Parallel,
        PlotKind::Importance,
    ] {
        render_svg(&data, kind, &PlotOptions::default())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
}

#[test]
fn conditional_parameters_render_and_are_skipped_where_absent() {
    // batch_size exists only for int8 and int4: the bf16 trials lack it.
    let mut data = study(2);
    let source = r#"[study]
name = "viz"
seed = 3
[[objective]]
metric = "latency_ms"
direction = "minimize"
[[objective]]
metric = "throughput"
direction = "maximize"
[[constraint]]
metric = "eval_loss_delta"
max = 0.05
[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-2
log = true
[space.batch_size]
type = "int"
values = [8, 16, 32, 64]
when = { quantization = ["int8", "int4"] }
[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4"]
[budget]
max_trials = 64
[trial]
workload = "external"
"#;
    data.def = crate::model::study::parse(source, "viz.toml", Path::new("/"), None).unwrap();
    for t in &mut data.trials {
        if t.params["quantization"] == ParamValue::Str("bf16".into()) {
            std::sync::Arc::make_mut(&mut t.params).remove("batch_size");
        }
        assert!(data.def.space.contains(&t.params));
    }
    let plain = study(2);
    for kind in PlotKind::ALL {
        let svg = render_svg(&data, kind, &PlotOptions::default())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(svg.starts_with("<svg"), "{kind:?}");
        if kind == PlotKind::Parallel {
            assert!(
                svg.contains("batch_size (when"),
                "the axis says it is conditional"
            );
            // Every finished trial still draws one line (bf16 ones skip the batch_size axis).
            let lines = |s: &str| s.matches("<polyline").count();
            assert!(lines(&svg) >= 30, "{} lines", lines(&svg));
            assert_eq!(
                lines(&svg),
                lines(&render_svg(&plain, kind, &PlotOptions::default()).unwrap())
            );
        }
    }
    let imp = crate::model::importance::per_objective(&data.def, &data.trials, 0.25);
    assert!(imp[0]
        .importance
        .params
        .iter()
        .any(|(p, _)| p == "batch_size"));
}
