//! What an SVG plot carries besides the drawing: for each trial point or line an invisible
//! hit target with a `<title>` naming the trial (a tooltip in any SVG viewer), linked to the
//! trial's web page when the plot is drawn for the page; and the layout's boxes (data area,
//! legend, no-value strip, tick labels) as invisible rectangles, so that tests — and anyone
//! post-processing the file — can check the geometry.
//!
//! Everything is appended as two groups before `</svg>`: `<g class="qt-layout">` (boxes,
//! `fill="none"`, no pointer events) and `<g class="qt-trials">` (hit targets, on top of the
//! drawing so that hovering works).

use super::Class;
use crate::view::markup::escape;
use std::fmt::Write as _;

/// A pixel rectangle: left, top, right, bottom.
pub type PixelBox = [i32; 4];

/// The kinds of layout boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BoxKind {
    /// Where values are plotted (a chart's plotting area).
    Data,
    /// A legend.
    Legend,
    /// The strip of trials without a value.
    Strip,
    /// The backdrop of a tick label (parallel coordinates).
    Tick,
}

impl BoxKind {
    fn class(self) -> &'static str {
        match self {
            BoxKind::Data => "qt-data",
            BoxKind::Legend => "qt-legend",
            BoxKind::Strip => "qt-strip",
            BoxKind::Tick => "qt-tick",
        }
    }
}

/// One trial's mark: a point or a line through `points`.
#[derive(Clone, Debug)]
pub(crate) struct TrialMark {
    /// The trial number.
    pub trial: u64,
    /// Which study it belongs to, as an index into the links given to [`Marks::apply`] (0
    /// but on the comparison plot).
    pub group: usize,
    /// How it ended.
    pub class: Class,
    /// Whether it is a line (else a point).
    pub line: bool,
    /// Pixel positions: one for a point, one or more for a line.
    pub points: Vec<(i32, i32)>,
    /// The tooltip: names the trial first.
    pub label: String,
}

/// Everything recorded while a plot is drawn.
#[derive(Clone, Debug, Default)]
pub(crate) struct Marks {
    /// Layout boxes, in drawing order.
    pub boxes: Vec<(BoxKind, PixelBox)>,
    /// Trial points and lines.
    pub trials: Vec<TrialMark>,
    /// The group marks recorded from now on belong to.
    pub group: usize,
}

impl Marks {
    /// Records a layout box.
    pub fn layout(&mut self, kind: BoxKind, (x, y): (std::ops::Range<i32>, std::ops::Range<i32>)) {
        self.boxes.push((kind, [x.start, y.start, x.end, y.end]));
    }

    /// Records a trial drawn as a point at `at`.
    pub fn point(&mut self, trial: u64, class: Class, at: (i32, i32), label: String) {
        self.trials.push(TrialMark {
            trial,
            group: self.group,
            class,
            line: false,
            points: vec![at],
            label,
        });
    }

    /// Records a trial drawn as a line through `points`.
    pub fn line(&mut self, trial: u64, class: Class, points: Vec<(i32, i32)>, label: String) {
        if !points.is_empty() {
            self.trials.push(TrialMark {
                trial,
                group: self.group,
                class,
                line: true,
                points,
                label,
            });
        }
    }

    /// `svg` with the overlay appended before its closing tag; each hit target links to
    /// `links[group]` followed by the trial number when there is such a link.
    pub fn apply(&self, svg: &str, links: &[&str]) -> String {
        let mut out = String::new();
        out.push_str(
            "<g class=\"qt-layout\" fill=\"none\" stroke=\"none\" pointer-events=\"none\">\n",
        );
        for (kind, [x0, y0, x1, y1]) in &self.boxes {
            let _ = writeln!(
                out,
                "<rect class=\"{}\" x=\"{x0}\" y=\"{y0}\" width=\"{}\" height=\"{}\"/>",
                kind.class(),
                x1 - x0,
                y1 - y0
            );
        }
        out.push_str("</g>\n<g class=\"qt-trials\">\n");
        for m in &self.trials {
            let link = links.get(m.group);
            if let Some(base) = link {
                let _ = write!(out, "<a href=\"{}{}\">", escape(base), m.trial);
            }
            let common = format!(
                "data-trial=\"{}\" data-state=\"{}\" data-label=\"{}\"",
                m.trial,
                m.class.label(),
                escape(&m.label)
            );
            let title = format!("<title>{}</title>", escape(&m.label));
            if let (false, [(x, y), ..]) = (m.line, &m.points[..]) {
                let _ = write!(
                    out,
                    "<circle class=\"qt-point\" {common} cx=\"{x}\" cy=\"{y}\" r=\"7\" fill=\"#fff\" fill-opacity=\"0\" pointer-events=\"all\">{title}</circle>"
                );
            } else {
                let pts: Vec<String> = m.points.iter().map(|(x, y)| format!("{x},{y}")).collect();
                let _ = write!(
                    out,
                    "<polyline class=\"qt-line\" {common} points=\"{}\" fill=\"none\" stroke=\"#000\" stroke-opacity=\"0\" stroke-width=\"7\" pointer-events=\"stroke\">{title}</polyline>",
                    pts.join(" ")
                );
            }
            if link.is_some() {
                out.push_str("</a>");
            }
            out.push('\n');
        }
        out.push_str("</g>\n");
        match svg.rfind("</svg>") {
            Some(i) => format!("{}{out}{}", &svg[..i], &svg[i..]),
            None => format!("{svg}{out}"),
        }
    }
}

/// The value of attribute `name` in one element's text (`<circle a="1" …>`), unescaped.
fn attr(element: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = element.find(&key)? + key.len();
    let len = element[start..].find('"')?;
    Some(
        element[start..start + len]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// The opening tags of `svg` that start with `prefix` (e.g. `<rect class="qt-legend"`).
fn tags<'a>(svg: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    svg.match_indices(prefix).map(move |(i, _)| {
        let rest = &svg[i..];
        &rest[..rest.find('>').map_or(rest.len(), |e| e + 1)]
    })
}

/// Reads back the layout boxes of one kind (`"qt-data"`, `"qt-legend"`, `"qt-strip"`,
/// `"qt-tick"`) from a rendered SVG: for tests and tools that check a plot's geometry.
pub fn read_boxes(svg: &str, class: &str) -> Vec<PixelBox> {
    let num = |e: &str, n: &str| attr(e, n).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    tags(svg, &format!("<rect class=\"{class}\""))
        .map(|e| {
            let (x, y) = (num(e, "x"), num(e, "y"));
            [x, y, x + num(e, "width"), y + num(e, "height")]
        })
        .collect()
}

/// A trial mark read back from a rendered SVG (see [`read_trials`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ReadMark {
    /// The trial number.
    pub trial: u64,
    /// Its class: `complete`, `failed`, `pruned`, …
    pub state: String,
    /// The tooltip.
    pub label: String,
    /// `true` for a line, `false` for a point.
    pub line: bool,
    /// Pixel positions.
    pub points: Vec<(i32, i32)>,
}

/// Reads back every trial point and line of a rendered SVG.
pub fn read_trials(svg: &str) -> Vec<ReadMark> {
    let mark = |e: &str, line: bool| {
        let points = if line {
            attr(e, "points")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| {
                    let (x, y) = p.split_once(',')?;
                    Some((x.parse().ok()?, y.parse().ok()?))
                })
                .collect()
        } else {
            let n = |k| attr(e, k).and_then(|v| v.parse().ok()).unwrap_or(0);
            vec![(n("cx"), n("cy"))]
        };
        ReadMark {
            trial: attr(e, "data-trial")
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX),
            state: attr(e, "data-state").unwrap_or_default(),
            label: attr(e, "data-label").unwrap_or_default(),
            line,
            points,
        }
    };
    tags(svg, "<circle class=\"qt-point\"")
        .map(|e| mark(e, false))
        .chain(tags(svg, "<polyline class=\"qt-line\"").map(|e| mark(e, true)))
        .collect()
}

/// Whether pixel `p` lies inside box `b` (edges included).
pub fn inside(b: &PixelBox, (x, y): (i32, i32)) -> bool {
    b[0] <= x && x <= b[2] && b[1] <= y && y <= b[3]
}

/// Whether two boxes overlap (sharing an edge is not overlapping).
pub fn overlap(a: &PixelBox, b: &PixelBox) -> bool {
    a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3]
}
