//! Parameter importance as horizontal bars, one panel per objective (PED-ANOVA; see
//! `quantune_strategies::importance` and [`crate::model::importance`]).

use super::*;

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
    let results = crate::model::importance::per_objective(&data.def, &data.trials, opts.quantile);
    let title = format!(
        "{}: parameter importance (PED-ANOVA, top {:.0} %)",
        def.name,
        opts.quantile * 100.0
    );
    let area = root.titled(&title, caption_font())?;
    let panels = area.split_evenly((results.len(), 1));
    let longest = def
        .space
        .params()
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(4) as u32;
    for (r, panel) in results.iter().zip(&panels) {
        let n = r.importance.params.len();
        let mut caption = format!(
            "{} ({}): {} trials, top {}",
            r.metric, r.direction, r.importance.trials, r.importance.top
        );
        if let Some(note) = &r.importance.note {
            caption.push_str(&format!(" — {note}"));
        }
        let chart = ChartBuilder::on(panel)
            .caption(caption, label_font(13))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(28)
            .y_label_area_size(longest * 8 + 16)
            .build_cartesian_2d(0.0..1.0, 0.0..n as f64)?;
        let mut chart = data_area(chart, marks);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(6)
            .x_label_formatter(&|x| format!("{x:.1}"))
            .label_style(label_font(12))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.1))
            .draw()?;
        // Most important at the top.
        let bars: Vec<(f64, f64, &str)> = r
            .importance
            .params
            .iter()
            .enumerate()
            .map(|(i, (name, v))| ((n - 1 - i) as f64, *v, name.as_str()))
            .collect();
        chart.draw_series(bars.iter().map(|(y, v, _)| {
            Rectangle::new([(0.0, y + 0.2), (*v, y + 0.8)], COMPLETE.mix(0.85).filled())
        }))?;
        chart.draw_series(bars.iter().map(|(y, _, name)| {
            EmptyElement::at((0.0, y + 0.5))
                + Text::new(
                    name.to_string(),
                    (-8, 0),
                    label_font(13).pos(Pos::new(HPos::Right, VPos::Center)),
                )
        }))?;
        chart.draw_series(bars.iter().map(|(y, v, _)| {
            EmptyElement::at((*v, y + 0.5))
                + Text::new(
                    format!("{v:.2}"),
                    (5, 0),
                    label_font(12).pos(Pos::new(HPos::Left, VPos::Center)),
                )
        }))?;
    }
    Ok(())
}
