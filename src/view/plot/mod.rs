//! Plots of a study (`quantune plot`, and the web page): optimization history with the
//! best-so-far line, the Pareto front of two objectives, parallel coordinates, parameter
//! importance, and learning curves.
//!
//! A plot is drawn from a [`StudyData`]: the study's definition, every trial record and their
//! intermediate reports, which is exactly what `GET /v1/studies/{name}/export` returns. The CLI
//! renders client-side from that JSON; the daemon's web page renders the same data the same
//! way (SVG only). Failed, pruned, cancelled and infeasible trials are always shown, marked;
//! those without a value sit in a strip under the chart, never on a value axis. Legends sit
//! right of the data area. Each SVG also carries a tooltip per trial point or line (linked to
//! the trial's page on the web page) and its layout boxes (`overlay.rs`, docs/PLOTS.md).
//!
//! SVG needs nothing from the system. PNG is drawn by plotters' bitmap backend, whose text
//! comes from the DejaVu Sans font built into the binary (`assets/fonts`), so neither needs
//! fontconfig or any installed font.

mod compare;
mod curves;
mod history;
mod importance;
pub mod overlay;
mod parallel;
mod pareto;

use crate::model::study::StudyDefinition;
pub use compare::render_compare_svg;
use overlay::{BoxKind, Marks};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
pub(crate) use plotters::style::text_anchor::{HPos, Pos, VPos};
use quantune_state::{ExportLine, Report, TrialRecord, TrialState};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Once;

/// What to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlotKind {
    /// Each objective per trial, with the best-so-far line.
    History,
    /// The first two objectives against each other, the Pareto front highlighted.
    Pareto,
    /// Parallel coordinates: one axis per parameter and objective, one line per trial.
    Parallel,
    /// Parameter importance (PED-ANOVA) per objective, as bars.
    Importance,
    /// Learning curves: intermediate reports per step, one line per trial.
    Curves,
}

impl PlotKind {
    /// Every kind, in the order the web page shows them.
    pub const ALL: [PlotKind; 5] = [
        PlotKind::History,
        PlotKind::Pareto,
        PlotKind::Parallel,
        PlotKind::Importance,
        PlotKind::Curves,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PlotKind::History => "history",
            PlotKind::Pareto => "pareto",
            PlotKind::Parallel => "parallel",
            PlotKind::Importance => "importance",
            PlotKind::Curves => "curves",
        }
    }
}

/// Everything a plot is drawn from.
#[derive(Clone, Debug)]
pub struct StudyData {
    /// The study's validated definition.
    pub def: StudyDefinition,
    /// Every trial, by number.
    pub trials: Vec<TrialRecord>,
    /// Intermediate reports of each trial that has some, by step.
    pub reports: BTreeMap<u64, Vec<Report>>,
}

impl StudyData {
    /// Reads one study from `export` JSON lines (the first study in them).
    pub fn from_export(data: &[u8]) -> Result<StudyData, String> {
        let text = std::str::from_utf8(data).map_err(|e| format!("export is not UTF-8: {e}"))?;
        let mut def = None;
        let mut trials = Vec::new();
        let mut reports = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ExportLine>(line)
                .map_err(|e| format!("export line {}: {e}", i + 1))?
            {
                ExportLine::Study(s) if def.is_none() => {
                    def = Some(
                        serde_json::from_value::<StudyDefinition>(s.definition)
                            .map_err(|e| format!("study definition: {e}"))?,
                    );
                }
                ExportLine::Study(_) => break,
                ExportLine::Trial { trial, reports: r } => {
                    if !r.is_empty() {
                        reports.insert(trial.number, r);
                    }
                    trials.push(trial);
                }
            }
        }
        let def = def.ok_or("the export holds no study")?;
        trials.sort_by_key(|t| t.number);
        Ok(StudyData {
            def,
            trials,
            reports,
        })
    }
}

/// Size and choices of a plot.
#[derive(Clone, Debug)]
pub struct PlotOptions {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The intermediate metric for learning curves (default: the pruner's, else the first
    /// objective's, else the first one reported).
    pub metric: Option<String>,
    /// Share of trials PED-ANOVA counts as top (importance).
    pub quantile: f64,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: 960,
            height: 600,
            metric: None,
            quantile: 0.1,
        }
    }
}

/// Why a plot could not be drawn.
#[derive(Debug)]
pub enum PlotError {
    /// The study has nothing this kind of plot can show (yet); the message says what is missing.
    NoData(String),
    /// Drawing or writing failed.
    Render(String),
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlotError::NoData(m) | PlotError::Render(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for PlotError {}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        PlotError::Render(e.to_string())
    }
}

type PlotResult = Result<(), PlotError>;

/// The font every plot uses, registered once with plotters (which needs a font to measure and,
/// for PNG, draw text).
static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is built in and known to parse.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Renders a plot as an SVG document. Each trial's point or line carries a `<title>` naming
/// the trial (a tooltip), and the layout's boxes are marked (see `overlay.rs`).
pub fn render_svg(
    data: &StudyData,
    kind: PlotKind,
    opts: &PlotOptions,
) -> Result<String, PlotError> {
    render_svg_linked(data, kind, opts, None)
}

/// [`render_svg`], with each trial's point or line a link to `link` followed by the trial
/// number when `link` is given (the web page's trial pages).
pub fn render_svg_linked(
    data: &StudyData,
    kind: PlotKind,
    opts: &PlotOptions,
    link: Option<&str>,
) -> Result<String, PlotError> {
    register_font();
    check(data, kind, opts)?;
    let mut out = String::new();
    let mut marks = Marks::default();
    {
        let root = SVGBackend::with_string(&mut out, (opts.width, opts.height)).into_drawing_area();
        draw(&root, data, kind, opts, &mut marks)?;
        root.present()?;
    }
    Ok(marks.apply(&out, link.as_slice()))
}

/// Renders a plot as a PNG file at `path`.
pub fn render_png(
    data: &StudyData,
    kind: PlotKind,
    opts: &PlotOptions,
    path: &Path,
) -> Result<(), PlotError> {
    register_font();
    check(data, kind, opts)?;
    let root = BitMapBackend::new(path, (opts.width, opts.height)).into_drawing_area();
    draw(&root, data, kind, opts, &mut Marks::default())?;
    root.present()
        .map_err(|e| PlotError::Render(format!("cannot write {}: {e}", path.display())))
}

/// Whether the study has what `kind` needs, before anything is drawn.
fn check(data: &StudyData, kind: PlotKind, opts: &PlotOptions) -> PlotResult {
    let name = &data.def.name;
    match kind {
        PlotKind::Pareto if data.def.objectives.len() < 2 => Err(PlotError::NoData(format!(
            "study '{name}' has one objective; a Pareto plot needs two (try --kind history)"
        ))),
        PlotKind::Curves if curves::metric(data, opts).is_none() && opts.metric.is_some() && !curves::reported(data).is_empty() => {
            let known: Vec<&str> = curves::reported(data).into_keys().collect();
            let asked = opts.metric.as_deref().unwrap_or_default();
            Err(PlotError::NoData(format!(
                "--metric {asked}: no report of study '{name}' has this metric{}; reported metrics: {}",
                crate::model::suggest::did_you_mean(asked, known.iter().copied()),
                known.join(", ")
            )))
        }
        PlotKind::Curves if curves::metric(data, opts).is_none() => Err(PlotError::NoData(
            format!("study '{name}' has no intermediate reports yet (learning curves come from report lines with a \"step\")"),
        )),
        _ if data.trials.is_empty() => Err(PlotError::NoData(format!(
            "study '{name}' has no trials yet"
        ))),
        _ => Ok(()),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &StudyData,
    kind: PlotKind,
    opts: &PlotOptions,
    marks: &mut Marks,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    match kind {
        PlotKind::History => history::draw(root, data, marks),
        PlotKind::Pareto => pareto::draw(root, data, marks),
        PlotKind::Parallel => parallel::draw(root, data, marks),
        PlotKind::Importance => importance::draw(root, data, opts, marks),
        PlotKind::Curves => curves::draw(root, data, opts, marks),
    }
}

// ---- shared look ----

/// Feasible complete trials.
const COMPLETE: RGBColor = RGBColor(31, 119, 180);
/// Imported (complete) results.
const IMPORTED: RGBColor = RGBColor(23, 190, 207);
/// Infeasible trials (constraint violated or declared).
const INFEASIBLE: RGBColor = RGBColor(127, 127, 127);
/// Failed trials.
const FAILED: RGBColor = RGBColor(214, 39, 40);
/// Pruned trials.
const PRUNED: RGBColor = RGBColor(255, 127, 14);
/// Running / queued / cancelled trials.
const OTHER: RGBColor = RGBColor(148, 103, 189);
/// The best-so-far line, the Pareto front, the best trial.
const BEST: RGBColor = RGBColor(214, 39, 40);

/// How a trial is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Class {
    Complete,
    Imported,
    Infeasible,
    Pruned,
    Failed,
    Other,
}

impl Class {
    fn of(def: &StudyDefinition, t: &TrialRecord) -> Class {
        match t.state {
            TrialState::Complete if !crate::model::leaderboard::feasible(def, t) => {
                Class::Infeasible
            }
            TrialState::Complete if t.imported => Class::Imported,
            TrialState::Complete => Class::Complete,
            TrialState::Infeasible => Class::Infeasible,
            TrialState::Pruned => Class::Pruned,
            TrialState::Failed => Class::Failed,
            _ => Class::Other,
        }
    }

    fn color(self) -> RGBColor {
        match self {
            Class::Complete => COMPLETE,
            Class::Imported => IMPORTED,
            Class::Infeasible => INFEASIBLE,
            Class::Pruned => PRUNED,
            Class::Failed => FAILED,
            Class::Other => OTHER,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Complete => "complete",
            Class::Imported => "imported",
            Class::Infeasible => "infeasible",
            Class::Pruned => "pruned",
            Class::Failed => "failed",
            Class::Other => "running/queued/cancelled",
        }
    }
}

/// A chart with two numeric axes.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Room kept right of every chart's data area for its legend, in pixels.
const LEGEND_W: u32 = 230;

/// Height of the strip under a chart that holds the trials without a value, in pixels.
const STRIP_H: u32 = 40;

/// A legend entry's symbol.
#[derive(Clone, Copy, Debug)]
enum Key {
    /// A trial class's marker.
    Class(Class),
    /// A line in a colour.
    Line(RGBColor),
    /// A filled dot of a radius.
    Dot(RGBColor, i32),
    /// A filled square.
    Square(RGBColor),
    /// The black ring around the best trial.
    Ring,
}

/// Draws `c`'s marker centred at pixel `at` of `root`.
fn marker<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: Class, at: (i32, i32)) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let color = c.color();
    let at = EmptyElement::at(at);
    match c {
        Class::Complete => root.draw(&(at + Circle::new((0, 0), 4, color.filled())))?,
        Class::Imported => root.draw(&(at + Rectangle::new([(-3, -3), (3, 3)], color.filled())))?,
        Class::Infeasible => root.draw(&(at + Cross::new((0, 0), 4, color.stroke_width(2))))?,
        Class::Pruned => root.draw(&(at + TriangleMarker::new((0, 0), 5, color.filled())))?,
        Class::Failed => root.draw(&(at + Cross::new((0, 0), 5, color.stroke_width(2))))?,
        Class::Other => root.draw(&(at + Circle::new((0, 0), 4, color.stroke_width(1))))?,
    }
    Ok(())
}

/// Draws a legend symbol centred at pixel `at` of `root`.
fn key<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, k: Key, at: (i32, i32)) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let (x, y) = at;
    match k {
        Key::Class(c) => marker(root, c, at)?,
        Key::Line(color) => root.draw(&PathElement::new(
            vec![(x - 8, y), (x + 8, y)],
            color.stroke_width(2),
        ))?,
        Key::Dot(color, r) => root.draw(&Circle::new(at, r, color.filled()))?,
        Key::Square(color) => root.draw(&Rectangle::new(
            [(x - 4, y - 4), (x + 4, y + 4)],
            color.filled(),
        ))?,
        Key::Ring => root.draw(&Circle::new(at, 7, BLACK.stroke_width(2)))?,
    }
    Ok(())
}

/// One trial placed on a chart: number, value coordinates, tooltip.
type Placed = (u64, (f64, f64), String);

/// Draws trials of one class as markers and records each for the overlay; returns the legend
/// entry "class (count)", if any were drawn.
fn points<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'a, DB>,
    marks: &mut Marks,
    c: Class,
    pts: &[Placed],
) -> Result<Option<(Key, String)>, PlotError>
where
    DB::ErrorType: 'static,
{
    if pts.is_empty() {
        return Ok(None);
    }
    for (n, p, label) in pts {
        let at = chart.backend_coord(p);
        marker(root, c, at)?;
        marks.point(*n, c, at, label.clone());
    }
    Ok(Some((
        Key::Class(c),
        format!("{} ({})", c.label(), pts.len()),
    )))
}

/// The tooltip of a trial: "trial N · state", then `detail` (values) or its reason.
fn trial_label(t: &TrialRecord, c: Class, detail: &str) -> String {
    let mut s = format!("trial {} · {}", t.number, c.label());
    if !detail.is_empty() {
        s.push_str(" · ");
        s.push_str(detail);
    }
    if let Some(r) = t.reason.as_deref().filter(|r| !r.is_empty()) {
        let r: String = r.chars().take(160).collect();
        s.push_str(" — ");
        s.push_str(&r);
    }
    s
}

/// The legend: a box right of the chart's data area (in the room `LEGEND_W` keeps free), one
/// line per entry. Recorded as the legend's layout box.
fn legend<'a, DB: DrawingBackend + 'a>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'a, DB>,
    marks: &mut Marks,
    entries: &[(Key, String)],
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(());
    }
    let (px, py) = chart.plotting_area().get_pixel_range();
    let font = label_font(12);
    let widest = entries
        .iter()
        .map(|(_, t)| root.estimate_text_size(t, &font).map_or(0, |(w, _)| w))
        .max()
        .unwrap_or(0) as i32;
    let (width, _) = root.dim_in_pixel();
    let x0 = px.end + 14;
    let x1 = (x0 + widest + 40).min(width as i32 - 2);
    let y0 = py.start;
    let y1 = y0 + 8 + 18 * entries.len() as i32;
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], WHITE.filled()))?;
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], BLACK.mix(0.4)))?;
    for (i, (k, text)) in entries.iter().enumerate() {
        let y = y0 + 13 + 18 * i as i32;
        key(root, *k, (x0 + 16, y))?;
        root.draw(&Text::new(
            text.clone(),
            (x0 + 32, y),
            font.pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    marks.layout(BoxKind::Legend, (x0..x1, y0..y1));
    Ok(())
}

/// The strip for trials without a value, on `area` under a chart: a shaded band labelled
/// "no value" (or `title`), the trials' markers at their `x`, never on a value axis. `left`
/// is the chart's y-label width, so that the strip's x axis lines up with the chart's.
/// Returns the legend entries of what it drew.
fn strip<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    marks: &mut Marks,
    (x, left, title): (std::ops::Range<f64>, u32, &str),
    trials: &BTreeMap<Class, Vec<Placed>>,
) -> Result<Vec<(Key, String)>, PlotError>
where
    DB::ErrorType: 'static,
{
    let chart = ChartBuilder::on(area)
        .margin_left(12)
        .margin_right(12 + LEGEND_W)
        .margin_top(6)
        .margin_bottom(6)
        .y_label_area_size(left)
        .build_cartesian_2d(x, 0.0..1.0)?;
    let (px, py) = chart.plotting_area().get_pixel_range();
    root.draw(&Rectangle::new(
        [(px.start, py.start), (px.end, py.end)],
        BLACK.mix(0.05).filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(px.start, py.start), (px.end, py.end)],
        BLACK.mix(0.25),
    ))?;
    root.draw(&Text::new(
        title.to_string(),
        (px.start - 6, (py.start + py.end) / 2),
        label_font(11)
            .color(&BLACK.mix(0.7))
            .pos(Pos::new(HPos::Right, VPos::Center)),
    ))?;
    marks.layout(BoxKind::Strip, (px, py));
    let mut entries = Vec::new();
    for (c, pts) in trials {
        if points(root, &chart, marks, *c, pts)?.is_some() {
            let text = format!("{}, {} ({})", c.label(), title, pts.len());
            entries.push((Key::Class(*c), text));
        }
    }
    Ok(entries)
}

/// The chart builder every plot with a legend starts from: margins that keep `LEGEND_W` free
/// on the right.
fn framed<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin(12).margin_right(12 + LEGEND_W);
    b
}

/// Records a chart's data area and returns the chart.
fn data_area<'a, DB: DrawingBackend + 'a>(
    chart: Chart<'a, DB>,
    marks: &mut Marks,
) -> Chart<'a, DB> {
    marks.layout(BoxKind::Data, chart.plotting_area().get_pixel_range());
    chart
}

/// `lo..hi` padded by 5 % (a range of one value becomes ±1 or ±10 %).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    if !(lo.is_finite() && hi.is_finite()) {
        return 0.0..1.0;
    }
    if hi > lo {
        let pad = (hi - lo) * 0.05;
        lo - pad..hi + pad
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo - pad..hi + pad
    }
}

/// Smallest and largest of some numbers.
fn bounds(v: impl IntoIterator<Item = f64>) -> (f64, f64) {
    v.into_iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        })
}

/// A caption style.
fn caption_font() -> TextStyle<'static> {
    TextStyle::from(("sans-serif", 18).into_font())
}

/// A label style of `size` points.
fn label_font(size: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", size).into_font())
}

/// The counts of trials per class, for captions ("12 complete, 2 failed, …").
fn class_counts(data: &StudyData) -> String {
    let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
    for t in &data.trials {
        *counts.entry(Class::of(&data.def, t)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(c, n)| format!("{n} {}", c.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number for an axis or a label: short.
fn short(v: f64) -> String {
    crate::view::table::num(v, false)
}

#[cfg(test)]
mod tests;
