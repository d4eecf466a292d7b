//! Two studies on one plot (the web page's comparison): when both have at least two objectives
//! and share the first two, their feasible trials in those two objectives with each study's
//! Pareto front joined; otherwise, when they share their first objective, its value by trial
//! number with each study's best-so-far line. Each study has its own colour and marker; every
//! point names its study and trial.

use super::*;
use quantune_strategies::pareto;

/// The two studies' colours.
const SIDES: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14)];

/// Draws study `side`'s marker at pixel `at`: circles for the first, squares for the second.
fn side_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    side: usize,
    at: (i32, i32),
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let color = SIDES[side];
    let at = EmptyElement::at(at);
    if side == 0 {
        root.draw(&(at + Circle::new((0, 0), 4, color.filled())))?;
    } else {
        root.draw(&(at + Rectangle::new([(-4, -4), (4, 4)], color.filled())))?;
    }
    Ok(())
}

/// Renders the comparison of `a` and `b` as SVG; `links` are the two studies' trial page
/// prefixes (the trial number is appended).
pub fn render_compare_svg(
    a: &StudyData,
    b: &StudyData,
    opts: &PlotOptions,
    links: [&str; 2],
) -> Result<String, PlotError> {
    register_font();
    let same = |i: usize| match (a.def.objectives.get(i), b.def.objectives.get(i)) {
        (Some(x), Some(y)) => x.metric == y.metric && x.direction == y.direction,
        _ => false,
    };
    if !same(0) {
        return Err(PlotError::NoData(format!(
            "'{}' and '{}' do not share their first objective, so they cannot share an axis",
            a.def.name, b.def.name
        )));
    }
    let mut out = String::new();
    let mut marks = Marks::default();
    {
        let root = SVGBackend::with_string(&mut out, (opts.width, opts.height)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root, [a, b], same(1), &mut marks)?;
        root.present()?;
    }
    Ok(marks.apply(&out, &links))
}

/// Feasible finished trials of `d` with finite values of the first `k` objectives.
fn feasible(d: &StudyData, k: usize) -> Vec<(&TrialRecord, Vec<f64>)> {
    d.trials
        .iter()
        .filter(|t| t.state.is_finished() && crate::model::leaderboard::feasible(&d.def, t))
        .filter_map(|t| {
            let v: Option<Vec<f64>> = d.def.objectives[..k]
                .iter()
                .map(|o| t.metrics.get(&o.metric).copied().filter(|x| x.is_finite()))
                .collect();
            Some((t, v?))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    studies: [&StudyData; 2],
    two: bool,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let k = if two { 2 } else { 1 };
    let objs = &studies[0].def.objectives[..k];
    let sets: Vec<Vec<(&TrialRecord, Vec<f64>)>> = studies.iter().map(|d| feasible(d, k)).collect();
    // (x, y) of a trial: two objectives, or trial number and the first objective.
    let xy = |t: &TrialRecord, v: &[f64]| -> (f64, f64) {
        if two {
            (v[0], v[1])
        } else {
            (t.number as f64, v[0])
        }
    };
    let all: Vec<(f64, f64)> = sets
        .iter()
        .flat_map(|s| s.iter().map(|(t, v)| xy(t, v)))
        .collect();
    let (x_lo, x_hi) = bounds(all.iter().map(|p| p.0));
    let (y_lo, y_hi) = bounds(all.iter().map(|p| p.1));
    let what = if two {
        format!("{} vs {}", objs[0].metric, objs[1].metric)
    } else {
        format!("{} by trial", objs[0].metric)
    };
    let title = format!("{} vs {}: {what}", studies[0].def.name, studies[1].def.name);
    let area = root.titled(&title, caption_font())?;
    let dir = |o: &quantune_strategies::Objective| format!("{:?}", o.direction).to_lowercase();
    let chart = framed(&area)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(padded(x_lo, x_hi), padded(y_lo, y_hi))?;
    let mut chart = data_area(chart, marks);
    let (x_desc, y_desc) = if two {
        (
            format!("{} ({})", objs[0].metric, dir(&objs[0])),
            format!("{} ({})", objs[1].metric, dir(&objs[1])),
        )
    } else {
        (
            "trial".to_string(),
            format!("{} ({})", objs[0].metric, dir(&objs[0])),
        )
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .label_style(label_font(12))
        .axis_desc_style(label_font(13))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    let mut entries: Vec<(Key, String)> = Vec::new();
    for (side, (set, d)) in sets.iter().zip(studies).enumerate() {
        marks.group = side;
        let color = SIDES[side];
        // The front (two objectives) or the best-so-far steps (one), as a line.
        let line: Vec<(f64, f64)> = if two {
            let losses: Vec<Vec<f64>> = set
                .iter()
                .map(|(_, v)| vec![objs[0].loss(v[0]), objs[1].loss(v[1])])
                .collect();
            let ranks = pareto::non_dominated_ranks(&losses);
            let mut front: Vec<(f64, f64)> = set
                .iter()
                .zip(&ranks)
                .filter(|(_, r)| **r == 1)
                .map(|((t, v), _)| xy(t, v))
                .collect();
            front.sort_by(|p, q| p.0.total_cmp(&q.0));
            front
        } else {
            let mut steps = Vec::new();
            let mut best: Option<f64> = None;
            for (t, v) in set {
                if best.is_none_or(|b| objs[0].loss(v[0]) < objs[0].loss(b)) {
                    if let Some(b) = best {
                        steps.push((t.number as f64, b));
                    }
                    best = Some(v[0]);
                    steps.push((t.number as f64, v[0]));
                }
            }
            if let (Some(b), Some(last)) = (best, set.last()) {
                steps.push((last.0.number as f64, b));
            }
            steps
        };
        chart.draw_series(LineSeries::new(line, color.mix(0.7).stroke_width(2)))?;
        for (t, v) in set {
            let p = xy(t, v);
            let at = chart.backend_coord(&p);
            side_marker(root, side, at)?;
            let values: Vec<String> = objs
                .iter()
                .zip(v)
                .map(|(o, x)| format!("{} {}", o.metric, short(*x)))
                .collect();
            let c = Class::of(&d.def, t);
            let label = format!("{}: {}", d.def.name, trial_label(t, c, &values.join(", ")));
            marks.point(t.number, c, at, label);
        }
        let line_name = if two { "front" } else { "best so far" };
        entries.push((
            if side == 0 {
                Key::Dot(color, 4)
            } else {
                Key::Square(color)
            },
            format!("{} ({} trials, {line_name})", d.def.name, set.len()),
        ));
    }
    marks.group = 0;
    if all.is_empty() {
        chart.draw_series(std::iter::once(Text::new(
            "no feasible finished trial in either study yet".to_string(),
            (0.5, 0.5),
            label_font(14).pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    legend(root, &chart, marks, &entries)?;
    Ok(())
}
