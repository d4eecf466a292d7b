//! The Pareto plot: the first two objectives against each other. Feasible trials are dots, the
//! front among them (non-dominated in these two objectives) is highlighted and joined, the best
//! trade-off of the leaderboard is ringed, and infeasible trials are crosses. Trials without
//! both values (failed, pruned) cannot be placed: the caption counts them.

use super::*;
use quantune_strategies::pareto;

pub(super) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
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
    let mut feasible: Vec<(&TrialRecord, (f64, f64))> = Vec::new();
    let mut infeasible: Vec<(f64, f64)> = Vec::new();
    let mut unplaced: BTreeMap<Class, usize> = BTreeMap::new();
    for t in data.trials.iter().filter(|t| t.state.is_finished()) {
        match (Class::of(def, t), both(t)) {
            (Class::Complete | Class::Imported, Some(p)) => feasible.push((t, p)),
            (Class::Infeasible, Some(p)) => infeasible.push(p),
            (c, _) => *unplaced.entry(c).or_default() += 1,
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
            .map(|(c, n)| format!("{n} {}", c.label()))
            .collect();
        title.push_str(&format!("; not placed: {}", parts.join(", ")));
    }
    let area = root.titled(&title, caption_font())?;
    let all = feasible
        .iter()
        .map(|(_, p)| *p)
        .chain(infeasible.iter().copied());
    let (x_lo, x_hi) = bounds(all.clone().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all.map(|p| p.1));
    let dir = |o: &quantune_strategies::Objective| format!("{:?}", o.direction).to_lowercase();
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x_lo, x_hi), padded(y_lo, y_hi))?;
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
    let mut front: Vec<(u64, (f64, f64))> = Vec::new();
    let mut dominated: BTreeMap<Class, Vec<(f64, f64)>> = BTreeMap::new();
    for ((t, p), r) in feasible.iter().zip(&ranks) {
        if *r == 1 {
            front.push((t.number, *p));
        } else {
            dominated.entry(Class::of(def, t)).or_default().push(*p);
        }
    }
    for (c, pts) in &dominated {
        points(&mut chart, *c, pts)?;
    }
    points(&mut chart, Class::Infeasible, &infeasible)?;
    if !front.is_empty() {
        front.sort_by(|p, q| p.1 .0.total_cmp(&q.1 .0));
        chart.draw_series(LineSeries::new(
            front.iter().map(|(_, p)| *p),
            BEST.mix(0.6).stroke_width(2),
        ))?;
        chart
            .draw_series(front.iter().map(|(_, p)| Circle::new(*p, 6, BEST.filled())))?
            .label(format!("Pareto front ({})", front.len()))
            .legend(|p| Circle::new(p, 6, BEST.filled()));
        chart.draw_series(front.iter().map(|(n, p)| {
            EmptyElement::at(*p) + Text::new(format!("#{n}"), (7, -14), label_font(11))
        }))?;
    }
    // The leaderboard's best trade-off (largest hypervolume contribution over all objectives).
    let board = crate::model::leaderboard::build(def, &data.trials, None);
    if let Some(best) = board.iter().find(|r| r.best) {
        if let Some((_, p)) = feasible.iter().find(|(t, _)| t.number == best.trial.trial) {
            chart
                .draw_series(std::iter::once(Circle::new(*p, 11, BLACK.stroke_width(2))))?
                .label(format!("best trade-off (trial {})", best.trial.trial))
                .legend(|p| Circle::new(p, 7, BLACK.stroke_width(2)));
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
    legend(&mut chart)?;
    Ok(())
}
