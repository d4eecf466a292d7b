//! Optimization history: one panel per objective, each trial's value by trial number, the
//! best feasible value so far as a step line. Trials without a value (failed, pruned, declared
//! infeasible, cancelled) are marked in a shaded "no value" strip under the chart, on the same
//! trial axis but off the value axis, so that none goes unseen and none looks like a value.

use super::*;

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let def = &data.def;
    let title = format!(
        "{}: optimization history ({})",
        def.name,
        class_counts(data)
    );
    let area = root.titled(&title, caption_font())?;
    let panels = area.split_evenly((def.objectives.len(), 1));
    let last = data.trials.last().map_or(1, |t| t.number) as f64;
    let finished: Vec<&TrialRecord> = data
        .trials
        .iter()
        .filter(|t| t.state.is_finished())
        .collect();
    for (obj, panel) in def.objectives.iter().zip(&panels) {
        let value = |t: &TrialRecord| {
            t.metrics
                .get(&obj.metric)
                .copied()
                .filter(|v| v.is_finite())
        };
        let (lo, hi) = bounds(finished.iter().filter_map(|t| value(t)));
        let has_values = lo <= hi;
        let yr = if has_values { padded(lo, hi) } else { 0.0..1.0 };
        let mut valued: BTreeMap<Class, Vec<Placed>> = BTreeMap::new();
        let mut unvalued: BTreeMap<Class, Vec<Placed>> = BTreeMap::new();
        for t in &finished {
            let c = Class::of(def, t);
            match value(t) {
                Some(v) => valued.entry(c).or_default().push((
                    t.number,
                    (t.number as f64, v),
                    trial_label(t, c, &format!("{} {}", obj.metric, short(v))),
                )),
                None => unvalued.entry(c).or_default().push((
                    t.number,
                    (t.number as f64, 0.5),
                    trial_label(t, c, &format!("no {}", obj.metric)),
                )),
            }
        }
        let (main, below) = if unvalued.is_empty() {
            (panel.clone(), None)
        } else {
            let (_, h) = panel.dim_in_pixel();
            let (a, b) = panel.split_vertically(h.saturating_sub(STRIP_H));
            (a, Some(b))
        };
        let direction = format!("{:?}", obj.direction).to_lowercase();
        let chart = framed(&main)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..last + 0.5, yr)?;
        let mut chart = data_area(chart, marks);
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc(format!("{} ({direction})", obj.metric))
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| short(*y))
            .label_style(label_font(12))
            .axis_desc_style(label_font(13))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.1))
            .draw()?;
        let mut entries: Vec<(Key, String)> = Vec::new();
        // Best so far among feasible complete trials, in trial-number order.
        let mut steps: Vec<(f64, f64)> = Vec::new();
        let mut best: Option<f64> = None;
        for t in finished
            .iter()
            .filter(|t| crate::model::leaderboard::feasible(def, t))
        {
            let Some(v) = value(t) else { continue };
            let better = best.is_none_or(|b| obj.loss(v) < obj.loss(b));
            if better {
                if let Some(b) = best {
                    steps.push((t.number as f64, b));
                }
                best = Some(v);
                steps.push((t.number as f64, v));
            }
        }
        if let Some(b) = best {
            steps.push((last + 0.5, b));
            chart.draw_series(LineSeries::new(steps, BEST.stroke_width(2)))?;
            entries.push((Key::Line(BEST), format!("best so far ({})", short(b))));
        }
        for (c, pts) in &valued {
            entries.extend(points(root, &chart, marks, *c, pts)?);
        }
        if !has_values {
            chart.draw_series(std::iter::once(Text::new(
                format!("no finished trial has {} yet", obj.metric),
                ((last - 0.5) / 2.0, 0.5),
                label_font(14).pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
        }
        if let Some(below) = &below {
            entries.extend(strip(
                root,
                below,
                marks,
                (-0.5..last + 0.5, 64, "no value"),
                &unvalued,
            )?);
        }
        legend(root, &chart, marks, &entries)?;
    }
    Ok(())
}
