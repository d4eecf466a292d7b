//! Optimization history: one panel per objective, each trial's value by trial number, the
//! best feasible value so far as a step line. Trials without a value (failed, pruned, declared
//! infeasible, cancelled) are marked on a band at the bottom so that none goes unseen.

use super::*;

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
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
    for (obj, panel) in def.objectives.iter().zip(&panels) {
        let finished: Vec<&TrialRecord> = data
            .trials
            .iter()
            .filter(|t| t.state.is_finished())
            .collect();
        let value = |t: &TrialRecord| {
            t.metrics
                .get(&obj.metric)
                .copied()
                .filter(|v| v.is_finite())
        };
        let (lo, hi) = bounds(finished.iter().filter_map(|t| value(t)));
        let has_values = lo <= hi;
        let mut yr = if has_values { padded(lo, hi) } else { 0.0..1.0 };
        let span = yr.end - yr.start;
        // Room below the values for the trials that have none.
        let band = yr.start - 0.04 * span;
        if finished.iter().any(|t| value(t).is_none()) {
            yr.start -= 0.08 * span;
        }
        let mut by_class: BTreeMap<Class, Vec<(f64, f64)>> = BTreeMap::new();
        for t in &finished {
            let y = value(t).unwrap_or(band);
            by_class
                .entry(Class::of(def, t))
                .or_default()
                .push((t.number as f64, y));
        }
        let direction = format!("{:?}", obj.direction).to_lowercase();
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5..last + 0.5, yr)?;
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
            chart
                .draw_series(LineSeries::new(steps, BEST.stroke_width(2)))?
                .label(format!("best so far ({})", short(b)))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x - 8, y), (x + 8, y)], BEST.stroke_width(2))
                });
        }
        for (c, pts) in &by_class {
            points(&mut chart, *c, pts)?;
        }
        if !has_values {
            chart.draw_series(std::iter::once(Text::new(
                format!("no finished trial has {} yet", obj.metric),
                ((last - 0.5) / 2.0, 0.5),
                label_font(14).pos(Pos::new(HPos::Center, VPos::Center)),
            )))?;
        }
        legend(&mut chart)?;
    }
    Ok(())
}
