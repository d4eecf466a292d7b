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
                t.reason = Some("pruned at step 200: worse than the median".into());
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
    // QUANTUNE_PLOT_DIR keeps the SVGs and PNGs for a look.
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
            std::fs::write(dir.join(format!("{}-{objectives}.svg", kind.name())), &svg).unwrap();
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
        "failed, no value (",
        "pruned, no value (",
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

use overlay::{inside, overlap, read_boxes, read_trials};

/// Renders `kind` for `data` at the default size.
fn svg_of(data: &StudyData, kind: PlotKind) -> String {
    render_svg(data, kind, &PlotOptions::default()).unwrap_or_else(|e| panic!("{kind:?}: {e}"))
}

#[test]
fn trials_without_a_value_sit_in_a_strip_off_the_value_axis() {
    for (objectives, kind) in [
        (1, PlotKind::History),
        (2, PlotKind::History),
        (2, PlotKind::Pareto),
    ] {
        let svg = svg_of(&study(objectives), kind);
        let data = read_boxes(&svg, "qt-data");
        let strips = read_boxes(&svg, "qt-strip");
        assert!(
            !data.is_empty() && !strips.is_empty(),
            "{kind:?}: {data:?} {strips:?}"
        );
        let marks = read_trials(&svg);
        let mut seen = BTreeMap::new();
        for m in &marks {
            *seen.entry(m.state.as_str()).or_insert(0) += 1;
            let p = m.points[0];
            let in_data = data.iter().any(|b| inside(b, p));
            let in_strip = strips.iter().any(|b| inside(b, p));
            match m.state.as_str() {
                "failed" | "pruned" => assert!(
                    !in_data && in_strip,
                    "{kind:?}: {} trial {} at {p:?} is not in the strip {strips:?}",
                    m.state,
                    m.trial
                ),
                "complete" | "imported" => {
                    assert!(in_data && !in_strip, "{kind:?}: trial {} at {p:?}", m.trial)
                }
                _ => {}
            }
        }
        for state in ["failed", "pruned", "complete"] {
            assert!(
                seen.contains_key(state),
                "{kind:?}: no {state} mark in {seen:?}"
            );
        }
        // Strips lie below the data areas, never over them.
        for s in &strips {
            assert!(
                data.iter().all(|d| !overlap(d, s)),
                "{kind:?}: strip {s:?} over {data:?}"
            );
        }
    }
}

#[test]
fn legends_are_outside_the_data_area_and_inside_the_picture() {
    let opts = PlotOptions::default();
    for (objectives, kind) in [
        (1, PlotKind::History),
        (2, PlotKind::History),
        (2, PlotKind::Pareto),
        (1, PlotKind::Curves),
    ] {
        let svg = svg_of(&study(objectives), kind);
        let data = read_boxes(&svg, "qt-data");
        let legends = read_boxes(&svg, "qt-legend");
        assert_eq!(legends.len(), data.len(), "{kind:?}: one legend per chart");
        for l in &legends {
            for d in &data {
                assert!(
                    !overlap(l, d),
                    "{kind:?}: legend {l:?} covers data area {d:?}"
                );
            }
            assert!(
                l[2] <= opts.width as i32 && l[3] <= opts.height as i32,
                "{kind:?}: {l:?}"
            );
        }
    }
}

#[test]
fn parallel_tick_labels_sit_on_a_backdrop_over_the_lines() {
    let svg = svg_of(&study(2), PlotKind::Parallel);
    let ticks = read_boxes(&svg, "qt-tick");
    // 3 log-float ticks, 4 batch sizes, 3 formats, 2 per objective.
    assert_eq!(ticks.len(), 3 + 4 + 3 + 2 + 2, "{ticks:?}");
    let drawing = &svg[..svg.find("<g class=\"qt-layout\"").unwrap()];
    let last_line = drawing.rfind("<polyline").unwrap();
    for b in &ticks {
        // The backdrop plotters drew: a white rectangle of this box, after every line.
        let rect = format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
            b[0],
            b[1],
            b[2] - b[0],
            b[3] - b[1]
        );
        let at = drawing
            .find(&rect)
            .unwrap_or_else(|| panic!("no backdrop {rect}"));
        assert!(at > last_line, "backdrop {b:?} is drawn under a line");
    }
    // Every tick text starts inside a backdrop; no backdrop overlaps another on the same axis.
    let texts: Vec<(i32, i32)> = drawing
        .match_indices("<text x=\"")
        .filter_map(|(i, _)| {
            let e = &drawing[i..drawing[i..].find('>').unwrap() + i];
            let n = |k: &str| -> Option<i32> {
                let s = e.find(&format!(" {k}=\""))? + k.len() + 3;
                e[s..s + e[s..].find('"')?].parse().ok()
            };
            Some((n("x")?, n("y")?))
        })
        .collect();
    let covered = texts
        .iter()
        .filter(|p| ticks.iter().any(|b| inside(b, **p)))
        .count();
    assert_eq!(covered, ticks.len(), "each tick label has its backdrop");
    for (i, a) in ticks.iter().enumerate() {
        for b in &ticks[i + 1..] {
            assert!(!overlap(a, b), "tick labels {a:?} and {b:?} overlap");
        }
    }
    // Every finished trial but the running one is a line with a tooltip.
    let lines = read_trials(&svg);
    assert_eq!(lines.len(), 30);
    assert!(lines
        .iter()
        .all(|m| m.line && m.label.starts_with(&format!("trial {} ", m.trial))));
}

#[test]
fn a_pruned_trials_curve_stops_at_its_prune_step() {
    let mut data = study(1);
    // Pruned trials kept reporting up to step 500 while they were being stopped.
    for t in data
        .trials
        .iter_mut()
        .filter(|t| t.state == TrialState::Pruned)
    {
        t.reason = Some("pruned at step 200: 3.1 is worse than the median 1.2".into());
        let r = data.reports.get_mut(&t.number).unwrap();
        for s in 3..=5u64 {
            r.push(Report {
                step: s * 100,
                values: [("eval_loss".to_string(), 9.0)].into(),
                at: 0.0,
            });
        }
    }
    let svg = svg_of(&data, PlotKind::Curves);
    let marks = read_trials(&svg);
    let right = |state: &str| -> Vec<i32> {
        marks
            .iter()
            .filter(|m| m.line && m.state == state)
            .map(|m| m.points.iter().map(|p| p.0).max().unwrap())
            .collect()
    };
    let (pruned, complete) = (right("pruned"), right("complete"));
    assert!(!pruned.is_empty() && !complete.is_empty());
    let end = complete[0];
    assert!(complete.iter().all(|x| *x == end));
    // Steps 100..500 over the x axis: step 200 is at a quarter of the complete curve's span.
    let start = marks.iter().find(|m| m.line).unwrap().points[0].0;
    let at_200 = start + (end - start) / 4;
    for x in pruned {
        assert!(
            x <= at_200 + 1,
            "a pruned curve runs to x={x}, past step 200 at {at_200}"
        );
    }
    for m in marks.iter().filter(|m| !m.line && m.state == "pruned") {
        assert!(m.label.contains("at step 200"), "{}", m.label);
    }
    assert_eq!(
        curves::prune_step(&data.trials[5]),
        Some(200),
        "the step comes from the reason"
    );
}

#[test]
fn points_link_to_trial_pages_only_when_asked_and_text_is_escaped() {
    let mut data = study(2);
    data.def.name = "<script>alert(1)</script>".into();
    data.trials[3].reason = Some("\"><img src=x onerror=alert(2)>".into());
    for kind in PlotKind::ALL {
        let plain = svg_of(&data, kind);
        let linked = render_svg_linked(
            &data,
            kind,
            &PlotOptions::default(),
            Some("/ui/s/x/trials/"),
        )
        .unwrap();
        for svg in [&plain, &linked] {
            assert!(
                !svg.contains("<script") && !svg.contains("<img"),
                "{kind:?}"
            );
        }
        assert!(!plain.contains("<a "), "{kind:?}: a plot file has no links");
        if kind == PlotKind::Importance {
            continue;
        }
        let marks = read_trials(&linked);
        assert!(!marks.is_empty(), "{kind:?}");
        for m in &marks {
            assert!(
                linked.contains(&format!("<a href=\"/ui/s/x/trials/{}\">", m.trial)),
                "{kind:?}: trial {} is not linked",
                m.trial
            );
        }
        assert!(
            plain.contains("<title>trial "),
            "{kind:?}: tooltips in plot files too"
        );
    }
}
