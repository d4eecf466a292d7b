//! The Pareto plot: the first two objectives against each other. Feasible trials are dots, the
//! front among them (non-dominated in these two objectives) is highlighted and joined, the best
//! trade-off of the leaderboard is ringed, and infeasible trials are crosses. Trials without
//! both values (failed, pruned) cannot be placed on the axes: they are marked by trial number
//! in a shaded "not placed" strip under the chart, and the caption counts them.

use super::*;
use quantune_strategies::pareto;

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let def = &data.def;
    let (a, b) = (&def.objectives[0], &def.objectives[1]);
    let both = |t: &TrialRecord| -> Option<(f64, f64)> {
        let x = *t.metrics.get(&a.metric)?;
        let y = *t.metrics.get(&b.metric)?;
        (x.is_finite() && y.is_finite()).then_some((x, y))
    };
    let values =
        |(x, y): (f64, f64)| format!("{} {}, {} {}", a.metric, short(x), b.metric, short(y));
    let mut feasible: Vec<(&TrialRecord, (f64, f64))> = Vec::new();
    let mut infeasible: Vec<Placed> = Vec::new();
    let mut unplaced: BTreeMap<Class, Vec<Placed>> = BTreeMap::new();
    for t in data.trials.iter().filter(|t| t.state.is_finished()) {
        let c = Class::of(def, t);
        match (c, both(t)) {
            (Class::Complete | Class::Imported, Some(p)) => feasible.push((t, p)),
            (Class::Infeasible, Some(p)) => {
                infeasible.push((t.number, p, trial_label(t, c, &values(p))))
            }
            (c, _) => unplaced.entry(c).or_default().push((
                t.number,
                (t.number as f64, 0.5),
                trial_label(t, c, "not placed"),
            )),
        }
    }
    let losses: Vec<Vec<f64>> = feasible
        .iter()
        .map(|(_, (x, y))| vec![a.loss(*x), b.loss(*y)])
        .collect();
    let ranks = pareto::non_dominated_ranks(&losses);
    let mut title = format!("{}: {} vs {}", def.name, a.metric, b.metric);
    if def.objectives.len() > 2 {
        title.push_str(&format!(
            " (first 2 of {} objectives)",
            def.objectives.len()
        ));
    }
    if !unplaced.is_empty() {
        let parts: Vec<String> = unplaced
            .iter()
            .map(|(c, n)| format!("{} {}", n.len(), c.label()))
            .collect();
        title.push_str(&format!("; not placed: {}", parts.join(", ")));
    }
    let area = root.titled(&title, caption_font())?;
    let (area, below) = if unplaced.is_empty() {
        (area, None)
    } else {
        let (_, h) = area.dim_in_pixel();
        let (a, b) = area.split_vertically(h.saturating_sub(STRIP_H));
        (a, Some(b))
    };
    let all = feasible
        .iter()
        .map(|(_, p)| *p)
        .chain(infeasible.iter().map(|(_, p, _)| *p));
    let (x_lo, x_hi) = bounds(all.clone().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all.map(|p| p.1));
    let dir = |o: &quantune_strategies::Objective| format!("{:?}", o.direction).to_lowercase();
    let chart = framed(&area)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x_lo, x_hi), padded(y_lo, y_hi))?;
    let mut chart = data_area(chart, marks);
    chart
        .configure_mesh()
        .x_desc(format!("{} ({})", a.metric, dir(a)))
        .y_desc(format!("{} ({})", b.metric, dir(b)))
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .label_style(label_font(12))
        .axis_desc_style(label_font(13))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    let mut front: Vec<Placed> = Vec::new();
    let mut dominated: BTreeMap<Class, Vec<Placed>> = BTreeMap::new();
    for ((t, p), r) in feasible.iter().zip(&ranks) {
        let c = Class::of(def, t);
        if *r == 1 {
            let label = trial_label(t, c, &format!("Pareto front · {}", values(*p)));
            front.push((t.number, *p, label));
        } else {
            let label = trial_label(t, c, &format!("Pareto rank {r} · {}", values(*p)));
            dominated.entry(c).or_default().push((t.number, *p, label));
        }
    }
    let mut entries: Vec<(Key, String)> = Vec::new();
    for (c, pts) in &dominated {
        entries.extend(points(root, &chart, marks, *c, pts)?);
    }
    entries.extend(points(root, &chart, marks, Class::Infeasible, &infeasible)?);
    if !front.is_empty() {
        front.sort_by(|p, q| p.1 .0.total_cmp(&q.1 .0));
        chart.draw_series(LineSeries::new(
            front.iter().map(|(_, p, _)| *p),
            BEST.mix(0.6).stroke_width(2),
        ))?;
        chart.draw_series(
            front
                .iter()
                .map(|(_, p, _)| Circle::new(*p, 6, BEST.filled())),
        )?;
        for (n, p, label) in &front {
            marks.point(*n, Class::Complete, chart.backend_coord(p), label.clone());
        }
        entries.push((Key::Dot(BEST, 6), format!("Pareto front ({})", front.len())));
        chart.draw_series(front.iter().map(|(n, p, _)| {
            EmptyElement::at(*p) + Text::new(format!("#{n}"), (7, -14), label_font(11))
        }))?;
    }
    // The leaderboard's best trade-off (largest hypervolume contribution over all objectives).
    let board = crate::model::leaderboard::build(def, &data.trials, None);
    if let Some(best) = board.iter().find(|r| r.best) {
        if let Some((_, p)) = feasible.iter().find(|(t, _)| t.number == best.trial.trial) {
            chart.draw_series(std::iter::once(Circle::new(*p, 11, BLACK.stroke_width(2))))?;
            entries.push((
                Key::Ring,
                format!("best trade-off (trial {})", best.trial.trial),
            ));
        }
    }
    if feasible.is_empty() && infeasible.is_empty() {
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "no finished trial has both {} and {} yet",
                a.metric, b.metric
            ),
            (0.5, 0.5),
            label_font(14).pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    if let Some(below) = &below {
        let first = data.trials.first().map_or(0, |t| t.number) as f64;
        let last = data.trials.last().map_or(1, |t| t.number) as f64;
        entries.extend(strip(
            root,
            below,
            marks,
            (first - 0.5..last + 0.5, 64, "not placed"),
            &unplaced,
        )?);
    }
    legend(root, &chart, marks, &entries)?;
    Ok(())
}
