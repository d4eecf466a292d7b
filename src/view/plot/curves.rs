//! Learning curves: one intermediate metric by step, one line per trial, coloured by how the
//! trial ended. A pruned trial's curve stops at the step where it was pruned (its reason says
//! "… at step N"): reports it wrote while it was being stopped are not drawn.

use super::*;

/// The metric to draw: the one asked for, else the pruner's, else the first objective, else
/// the one reported most often; `None` when no trial reported it (or anything).
pub(super) fn metric(data: &StudyData, opts: &PlotOptions) -> Option<String> {
    let seen = reported(data);
    if let Some(m) = &opts.metric {
        return seen.contains_key(m.as_str()).then(|| m.clone());
    }
    let preferred = data
        .def
        .pruner
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .chain(data.def.objectives.iter().map(|o| o.metric.as_str()));
    for m in preferred {
        if seen.contains_key(m) {
            return Some(m.to_string());
        }
    }
    seen.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(k, _)| k.to_string())
}

/// Every metric name in the study's intermediate reports, with how many reports carry it.
pub(super) fn reported(data: &StudyData) -> BTreeMap<&str, usize> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in data.reports.values().flatten() {
        for k in r.values.keys() {
            *seen.entry(k.as_str()).or_default() += 1;
        }
    }
    seen
}

/// The step at which a pruned trial was stopped, from its reason ("pruned at step N: …", or
/// the quality gate's "… at step N is outside …").
pub(super) fn prune_step(t: &TrialRecord) -> Option<u64> {
    if t.state != TrialState::Pruned {
        return None;
    }
    let reason = t.reason.as_deref()?;
    let (_, rest) = reason.split_once("at step ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A trial and its curve as `(step, value)` points.
type TrialCurve<'a> = (&'a TrialRecord, Vec<(f64, f64)>);

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
    opts: &PlotOptions,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let def = &data.def;
    let Some(m) = metric(data, opts) else {
        return Err(PlotError::NoData(format!(
            "no trial of '{}' reported {}",
            def.name,
            opts.metric.as_deref().unwrap_or("anything")
        )));
    };
    let curves: Vec<TrialCurve<'_>> = data
        .trials
        .iter()
        .filter_map(|t| {
            let until = prune_step(t).unwrap_or(u64::MAX);
            let pts: Vec<(f64, f64)> = data
                .reports
                .get(&t.number)?
                .iter()
                .filter(|r| r.step <= until)
                .filter_map(|r| {
                    let v = *r.values.get(&m)?;
                    v.is_finite().then_some((r.step as f64, v))
                })
                .collect();
            (!pts.is_empty()).then_some((t, pts))
        })
        .collect();
    let (x_lo, x_hi) = bounds(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)));
    let (y_lo, y_hi) = bounds(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)));
    let title = format!(
        "{}: learning curves of {m} ({} trials)",
        def.name,
        curves.len()
    );
    let area = root.titled(&title, caption_font())?;
    let chart = framed(&area)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x_lo, x_hi), padded(y_lo, y_hi))?;
    let mut chart = data_area(chart, marks);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(m.clone())
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .label_style(label_font(12))
        .axis_desc_style(label_font(13))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    let mut entries: Vec<(Key, String)> = Vec::new();
    let mut labelled: Vec<Class> = Vec::new();
    let mut order: Vec<(Class, &TrialCurve<'_>)> =
        curves.iter().map(|c| (Class::of(def, c.0), c)).collect();
    // Complete trials on top of the others.
    order.sort_by_key(|(c, (t, _))| (std::cmp::Reverse(*c), t.number));
    for (class, (t, pts)) in order {
        let color = class.color();
        chart.draw_series(LineSeries::new(
            pts.iter().copied(),
            color
                .mix(0.8)
                .stroke_width(if class == Class::Complete { 2 } else { 1 }),
        ))?;
        if !labelled.contains(&class) {
            labelled.push(class);
            let n = curves
                .iter()
                .filter(|(t, _)| Class::of(def, t) == class)
                .count();
            entries.push((Key::Line(color), format!("{} ({n})", class.label())));
        }
        let pixels: Vec<(i32, i32)> = pts.iter().map(|p| chart.backend_coord(p)).collect();
        if let (Some(end), Some(px)) = (pts.last(), pixels.last()) {
            chart.draw_series(std::iter::once(Circle::new(*end, 3, color.filled())))?;
            let detail = format!("{m} {} at step {}", short(end.1), short(end.0));
            marks.point(t.number, class, *px, trial_label(t, class, &detail));
        }
        let detail = format!("{} reports of {m}", pts.len());
        marks.line(t.number, class, pixels, trial_label(t, class, &detail));
    }
    legend(root, &chart, marks, &entries)?;
    Ok(())
}
