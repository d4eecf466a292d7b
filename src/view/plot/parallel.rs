//! Parallel coordinates: one vertical axis per parameter (in the space's own scale: log axes
//! are log, categorical choices are evenly spaced) and per objective, one line per finished
//! trial. Feasible trials are shaded by the first objective (darker is better) and the best one
//! is drawn thick in red; infeasible trials are grey, failed red, pruned orange. A trial
//! without objective values ends at the last parameter axis. Tick labels sit on a white
//! backdrop drawn over the lines, so that no line crosses a label.

use super::*;
use quantune_strategies::{Domain, ParamValue};

/// Shade of a feasible trial: `t` = 0 for the best objective value, 1 for the worst.
fn shade(t: f64) -> RGBAColor {
    let (dark, light) = ((8.0, 48.0, 107.0), (158.0, 202.0, 225.0));
    let mix = |a: f64, b: f64| (a + (b - a) * t.clamp(0.0, 1.0)).round() as u8;
    RGBColor(
        mix(dark.0, light.0),
        mix(dark.1, light.1),
        mix(dark.2, light.2),
    )
    .mix(0.9)
}

/// Tick labels of a parameter axis: `(unit position, text)`.
fn ticks(domain: &Domain) -> Vec<(f64, String)> {
    let text = |v: &ParamValue| match v {
        ParamValue::Float(x) => short(*x),
        v => v.to_string(),
    };
    match domain.cardinality() {
        Some(n) if n <= 8 => (0..n)
            .map(|k| {
                let v = domain.grid_value(k, n);
                (domain.to_unit(&v).unwrap_or(0.5), text(&v))
            })
            .collect(),
        _ => [0.0, 0.5, 1.0]
            .iter()
            .map(|&u| (u, text(&domain.from_unit(u))))
            .collect(),
    }
}

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let def = &data.def;
    let params = def.space.params();
    let objectives = &def.objectives;
    let k = params.len() + objectives.len();
    let title = format!(
        "{}: parallel coordinates ({})",
        def.name,
        class_counts(data)
    );
    let area = root.titled(&title, caption_font())?;
    let first = &objectives[0];
    let key = format!(
        "line shade: {} of feasible trials (darker = better); thick red: best; grey: infeasible; red: failed; orange: pruned",
        first.metric
    );
    let grey = BLACK.mix(0.7);
    area.draw(&Text::new(key, (12, 2), label_font(12).color(&grey)))?;
    let area = area.margin(20, 0, 0, 0);
    let finished: Vec<&TrialRecord> = data
        .trials
        .iter()
        .filter(|t| t.state.is_finished())
        .collect();
    // Objective axes are scaled between the smallest and largest value seen.
    let ranges: Vec<(f64, f64)> = objectives
        .iter()
        .map(|o| {
            bounds(
                finished
                    .iter()
                    .filter_map(|t| t.metrics.get(&o.metric).copied()),
            )
        })
        .collect();
    let ypos = |t: &TrialRecord, axis: usize| -> Option<f64> {
        if axis < params.len() {
            let p = &params[axis];
            return p.domain.to_unit(t.params.get(&p.name)?);
        }
        let i = axis - params.len();
        let v = *t.metrics.get(&objectives[i].metric)?;
        let (lo, hi) = ranges[i];
        (v.is_finite() && lo <= hi).then(|| if hi > lo { (v - lo) / (hi - lo) } else { 0.5 })
    };
    let x_hi = (k as f64 - 1.0).max(0.0);
    let chart = ChartBuilder::on(&area)
        .margin_left(40)
        .margin_right(70)
        .margin_top(28)
        .margin_bottom(16)
        .build_cartesian_2d(-0.15..x_hi + 0.15, -0.04..1.04)?;
    let mut chart = data_area(chart, marks);
    // Lines: the lesser classes first, then feasible trials from worst to best, the best last.
    let board = crate::model::leaderboard::build(def, &data.trials, None);
    let best = board.iter().find(|r| r.best).map(|r| r.trial.trial);
    let (lo0, hi0) = ranges[0];
    let quality = |t: &TrialRecord| -> f64 {
        let Some(v) = t.metrics.get(&first.metric) else {
            return 1.0;
        };
        let u = if hi0 > lo0 {
            (v - lo0) / (hi0 - lo0)
        } else {
            0.5
        };
        // 0 = best in the objective's direction.
        if first.loss(1.0) < first.loss(0.0) {
            1.0 - u
        } else {
            u
        }
    };
    let mut order: Vec<(&TrialRecord, Class)> = finished
        .iter()
        .map(|t| (*t, Class::of(def, t)))
        .filter(|(_, c)| *c != Class::Other)
        .collect();
    let rank = |(t, c): &(&TrialRecord, Class)| -> (u8, i64) {
        match c {
            Class::Complete | Class::Imported if Some(t.number) == best => (3, 0),
            Class::Complete | Class::Imported => (2, -(quality(t) * 1e6) as i64),
            _ => (1, 0),
        }
    };
    order.sort_by_key(rank);
    for (t, c) in &order {
        // A conditional parameter the trial lacks is skipped: the line joins its neighbours.
        let pts: Vec<(f64, f64)> = (0..k)
            .filter_map(|axis| ypos(t, axis).map(|y| (axis as f64, y)))
            .collect();
        let style = match c {
            Class::Complete | Class::Imported if Some(t.number) == best => BEST.stroke_width(3),
            Class::Complete | Class::Imported => shade(quality(t)).stroke_width(1),
            Class::Infeasible => INFEASIBLE.mix(0.5).stroke_width(1),
            Class::Failed => FAILED.mix(0.45).stroke_width(1),
            Class::Pruned => PRUNED.mix(0.55).stroke_width(1),
            Class::Other => OTHER.mix(0.4).stroke_width(1),
        };
        let pixels = pts.iter().map(|p| chart.backend_coord(p)).collect();
        chart.draw_series(std::iter::once(PathElement::new(pts, style)))?;
        let detail: Vec<String> = objectives
            .iter()
            .filter_map(|o| {
                Some(format!(
                    "{} {}",
                    o.metric,
                    short(*t.metrics.get(&o.metric)?)
                ))
            })
            .collect();
        marks.line(t.number, *c, pixels, trial_label(t, *c, &detail.join(", ")));
    }
    // Tick labels are drawn after every axis, each on a backdrop over the lines.
    let mut labels: Vec<((f64, f64), String)> = Vec::new();
    // Axes with their names and ticks.
    for axis in 0..k {
        let x = axis as f64;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, 1.0)],
            BLACK.stroke_width(1),
        )))?;
        let (name, ticks) = if axis < params.len() {
            let p = &params[axis];
            let log = matches!(
                p.domain,
                Domain::Float { log: true, .. } | Domain::Int { log: true, .. }
            );
            let mut name = if log {
                format!("{} (log)", p.name)
            } else {
                p.name.clone()
            };
            if !def.space.conditions_of(&p.name).is_empty() {
                name.push_str(" (when …)");
            }
            (name, ticks(&p.domain))
        } else {
            let i = axis - params.len();
            let o = &objectives[i];
            let (lo, hi) = ranges[i];
            let dir = format!("{:?}", o.direction).to_lowercase();
            let ticks = if lo <= hi {
                vec![(0.0, short(lo)), (1.0, short(hi))]
            } else {
                vec![(0.5, "no values".to_string())]
            };
            (format!("{} ({dir})", o.metric), ticks)
        };
        chart.draw_series(std::iter::once(
            EmptyElement::at((x, 1.0))
                + Text::new(
                    name,
                    (0, -10),
                    label_font(13).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ),
        ))?;
        labels.extend(ticks.into_iter().map(|(u, text)| ((x, u), text)));
    }
    let grey = BLACK.mix(0.75);
    let font = label_font(11);
    for (at, text) in labels {
        let (x, y) = chart.backend_coord(&at);
        let (w, h) = root
            .estimate_text_size(&text, &font)
            .map(|(w, h)| (w as i32, h as i32))
            .unwrap_or((6 * text.chars().count() as i32, 11));
        let (x0, x1) = (x + 3, x + 7 + w + 2);
        let (y0, y1) = (y - h / 2 - 2, y + h / 2 + 2);
        root.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            WHITE.mix(0.9).filled(),
        ))?;
        marks.layout(BoxKind::Tick, (x0..x1, y0..y1));
        root.draw(&Text::new(
            text,
            (x + 5, y),
            font.color(&grey).pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
}
