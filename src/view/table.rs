//! Rendering for people and scripts: aligned text tables and CSV built from the same rows, and
//! the leaderboard/trials/studies tables every command (and `run`) prints.

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON document (stable; see docs/CLI.md).
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

use crate::model::duration::format_secs;
use crate::model::leaderboard::Row;
use crate::model::wire::{StudySummary, TrialView};
use std::collections::BTreeSet;

/// A table: a header and rows of cells.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Table {
    /// Column names.
    pub headers: Vec<String>,
    /// Cells, one `Vec` per row, as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Aligned columns separated by two spaces.
    pub fn to_text(&self) -> String {
        self.to_text_painted(None)
    }

    /// [`Table::to_text`] with the header in bold and each row in its paint (`paints[i]` for
    /// row `i`), when `paints` is given (colours on).
    /// Control characters in cells (a terminal escape sequence in a metric name or a choice)
    /// are shown escaped (`\x1b`), never sent to the terminal.
    pub fn to_text_painted(&self, paints: Option<&[Option<crate::view::color::Paint>]>) -> String {
        let escaped: Vec<Vec<String>> = std::iter::once(&self.headers)
            .chain(&self.rows)
            .map(|line| line.iter().map(|c| escape_control(c)).collect())
            .collect();
        let mut widths: Vec<usize> = escaped[0].iter().map(|h| h.chars().count()).collect();
        for r in &escaped[1..] {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (i, line) in escaped.iter().enumerate() {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let text = cells.join("  ");
            let text = text.trim_end();
            let paint = match (paints, i) {
                (None, _) => None,
                (Some(_), 0) => Some(crate::view::color::Paint::Bold),
                (Some(p), i) => p.get(i - 1).copied().flatten(),
            };
            match paint {
                Some(p) => out.push_str(&p.apply(text)),
                None => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// RFC 4180 CSV.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = line.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

/// Which columns a table shows on screen (`--columns`, `--all`); CSV and JSON always carry
/// every column unless `--columns` names some.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Columns {
    /// The command's default columns, fitted to the width.
    #[default]
    Default,
    /// Every column, as wide as it is.
    All,
    /// These columns, in this order, as wide as they are.
    Only(Vec<String>),
}

impl Columns {
    /// From the `--columns a,b` and `--all` flags.
    pub fn from_flags(columns: Option<&str>, all: bool) -> Columns {
        match (columns, all) {
            (_, true) => Columns::All,
            (Some(c), false) => Columns::Only(
                c.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            (None, false) => Columns::Default,
        }
    }
}

/// Cells are never cut narrower than this.
const CELL_MIN: usize = 12;
/// Headers are never cut narrower than this.
const HEADER_MIN: usize = 9;

impl Table {
    /// Only the columns named in `names`, in that order; an unknown name is an error that lists
    /// the columns there are.
    pub fn select(&self, names: &[String]) -> Result<Table, String> {
        let mut idx = Vec::with_capacity(names.len());
        for n in names {
            match self.headers.iter().position(|h| h == n) {
                Some(i) => idx.push(i),
                None => {
                    return Err(format!(
                        "--columns: no column \"{n}\"; the columns are: {}",
                        self.headers.join(", ")
                    ))
                }
            }
        }
        Ok(Table {
            headers: idx.iter().map(|&i| self.headers[i].clone()).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
                .collect(),
        })
    }

    /// The table narrowed to `width` columns of text: the widest columns are cut (cells with
    /// `…` at the end, never below 12 characters; headers abbreviated, never below 9
    /// characters or their cells' width), and if that is not
    /// enough, the columns named in `drop_order` are left out, in that order, until the rest
    /// fits. Cells come back with control characters escaped. Returns the table and the
    /// headers left out.
    pub fn fit(&self, width: usize, drop_order: &[String]) -> (Table, Vec<String>) {
        let mut kept = Table {
            headers: self.headers.iter().map(|h| escape_control(h)).collect(),
            rows: self
                .rows
                .iter()
                .map(|r| r.iter().map(|c| escape_control(c)).collect())
                .collect(),
        };
        let mut names = self.headers.clone();
        let mut left_out = Vec::new();
        let mut order = drop_order.iter();
        loop {
            let (t, fits) = kept.shrink(width);
            if fits {
                return (t, left_out);
            }
            let Some(i) = order.find_map(|d| names.iter().position(|n| n == d)) else {
                return (t, left_out);
            };
            left_out.push(names.remove(i));
            kept.headers.remove(i);
            for r in &mut kept.rows {
                r.remove(i);
            }
        }
    }

    /// Width of column `i` as text: its header or its widest cell.
    fn column_width(&self, i: usize) -> usize {
        self.rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain(std::iter::once(self.headers[i].chars().count()))
            .max()
            .unwrap_or(0)
    }

    /// Width of the whole table as text (two spaces between columns).
    fn text_width(&self) -> usize {
        let n = self.headers.len();
        (0..n).map(|i| self.column_width(i)).sum::<usize>() + 2 * n.saturating_sub(1)
    }

    /// The widest columns cut towards `width` (see [`Table::fit`]); whether the result fits.
    fn shrink(&self, width: usize) -> (Table, bool) {
        let mut t = self.clone();
        loop {
            let excess = t.text_width().saturating_sub(width);
            if excess == 0 {
                return (t, true);
            }
            // The widest column that can still give room.
            let pick = (0..t.headers.len())
                .map(|i| (i, t.column_width(i), t.column_floor(i)))
                .filter(|(_, w, floor)| w > floor)
                .max_by_key(|(_, w, _)| *w);
            let Some((i, w, floor)) = pick else {
                return (t, false);
            };
            t.cut_column(i, w.saturating_sub(excess).max(floor));
        }
    }

    /// The narrowest column `i` may become: cells no narrower than 12 characters (or as they
    /// are), the header no narrower than 9 (or its cells).
    fn column_floor(&self, i: usize) -> usize {
        let cells = self
            .rows
            .iter()
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0);
        let cells = cells.min(CELL_MIN);
        let header = self.headers[i].chars().count().min(HEADER_MIN.max(cells));
        cells.max(header)
    }

    /// Cuts column `i` to `target` characters: cells at the end (`…`), the header abbreviated
    /// (`thr_tok_s`, [`crate::view::width::abbreviate`]) so that a unit at the end stays.
    fn cut_column(&mut self, i: usize, target: usize) {
        for r in &mut self.rows {
            if r[i].chars().count() > target {
                r[i] = crate::view::width::elide(&r[i], target);
            }
        }
        if self.headers[i].chars().count() > target {
            self.headers[i] = crate::view::width::abbreviate(&self.headers[i], target);
        }
    }
}

/// `s` with every control character (C0, DEL, C1) written as `\xNN` (`\u{NNNN}` above
/// 0xff), so that text from a trial or a study file cannot drive the terminal.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let n = c as u32;
            if n <= 0xff {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_string()
    }
}

/// A number for a table: short for people (four significant digits,
/// [`quantune_strategies::display::num`]), exact for CSV.
pub fn num(v: f64, exact: bool) -> String {
    if exact {
        v.to_string()
    } else {
        quantune_strategies::display::num(v)
    }
}

fn param_names<'a>(trials: impl Iterator<Item = &'a TrialView>) -> (Vec<String>, Vec<String>) {
    let mut params = BTreeSet::new();
    let mut metrics = BTreeSet::new();
    for t in trials {
        params.extend(t.params.keys().cloned());
        metrics.extend(t.metrics.keys().cloned());
    }
    (params.into_iter().collect(), metrics.into_iter().collect())
}

fn trial_cells(t: &TrialView, params: &[String], metrics: &[String], exact: bool) -> Vec<String> {
    let mut cells = Vec::new();
    for p in params {
        cells.push(match t.params.get(p) {
            Some(quantune_strategies::ParamValue::Float(f)) => num(*f, exact),
            Some(v) => v.to_string(),
            // A conditional parameter the trial does not have: `-` for people, empty in CSV.
            None if exact => String::new(),
            None => "-".into(),
        });
    }
    for m in metrics {
        cells.push(t.metrics.get(m).map(|v| num(*v, exact)).unwrap_or_default());
    }
    cells
}

/// The leaderboard as a table: rank, trial, parameters, metrics, state, duration, mark.
pub fn leaderboard_table(rows: &[Row], exact: bool) -> Table {
    let (params, metrics) = param_names(rows.iter().map(|r| &r.trial));
    let mut headers = vec!["rank".to_string(), "trial".to_string()];
    headers.extend(params.iter().cloned());
    headers.extend(metrics.iter().cloned());
    headers.extend(["state", "duration", "note"].map(String::from));
    let rows = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.rank.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                r.trial.trial.to_string(),
            ];
            c.extend(trial_cells(&r.trial, &params, &metrics, exact));
            c.push(r.trial.state.clone());
            c.push(
                r.trial
                    .duration_s
                    .map(|d| if exact { d.to_string() } else { format_secs(d) })
                    .unwrap_or_default(),
            );
            let mut note: Vec<String> = Vec::new();
            if r.best {
                note.push("best".into());
            } else if !r.feasible && r.trial.state == "infeasible" {
                // The state column says it; the note says why.
                note.push(r.trial.reason.clone().unwrap_or_default());
            } else if !r.feasible {
                note.push(format!(
                    "infeasible: {}",
                    r.trial.reason.clone().unwrap_or_default()
                ));
            }
            if let Some(n) = &r.trial.note {
                note.push(n.replace('\n', " "));
            }
            for t in &r.ties {
                note.push(format!(
                    "≈ trial {} on {} (within spread)",
                    t.with, t.metric
                ));
            }
            c.push(note.join("; "));
            c
        })
        .collect();
    Table { headers, rows }
}

/// The leaderboard's default columns on screen: rank, trial, the parameters, the study's
/// objective and constraint metrics (`key_metrics`; every metric but spreads when empty),
/// state and note.
fn leaderboard_default(rows: &[Row], key_metrics: &[String]) -> Vec<String> {
    let (params, metrics) = param_names(rows.iter().map(|r| &r.trial));
    let mut cols = vec!["rank".to_string(), "trial".to_string()];
    cols.extend(params);
    if key_metrics.is_empty() {
        cols.extend(
            metrics
                .into_iter()
                .filter(|m| !m.ends_with(crate::model::leaderboard::SPREAD_SUFFIX)),
        );
    } else {
        cols.extend(key_metrics.iter().filter(|m| metrics.contains(m)).cloned());
    }
    cols.extend(["state".to_string(), "note".to_string()]);
    cols
}

/// A table as people see it: the columns asked for, or the `default` ones fitted to `width`
/// (leaving out those in `drop_order`, in that order, when cutting is not enough, and saying
/// so on a last line), painted when `paints` is given.
fn screen_text(
    t: &Table,
    columns: &Columns,
    default: &[String],
    drop_order: &[String],
    width: usize,
    paints: Option<&[Option<crate::view::color::Paint>]>,
) -> Result<String, String> {
    let (shown, left_out) = match columns {
        Columns::All => (t.clone(), Vec::new()),
        Columns::Only(names) => (t.select(names)?, Vec::new()),
        Columns::Default => t.select(default)?.fit(width, drop_order),
    };
    let mut text = shown.to_text_painted(paints);
    if !left_out.is_empty() {
        let note = format!(
            "({} more column(s) to fit {width} characters: {}; --all shows every column, --columns A,B picks)",
            left_out.len(),
            left_out.join(", ")
        );
        text.push_str(&crate::view::width::elide(&note, width));
        text.push('\n');
    }
    Ok(text)
}

/// A table for CSV: every column, or those `--columns` names.
pub fn csv_columns(t: &Table, columns: &Columns) -> Result<Table, String> {
    match columns {
        Columns::Only(names) => t.select(names),
        _ => Ok(t.clone()),
    }
}

/// The leaderboard as `leaderboard`, `watch` and `run` print it for people (see
/// [`screen_text`]): by default rank, trial, parameters, the `key_metrics` (objectives and
/// constraints), state and note, fitted to `width`; the best row bold green, infeasible ones
/// grey when `color`.
pub fn leaderboard_text(
    rows: &[Row],
    key_metrics: &[String],
    columns: &Columns,
    width: usize,
    color: bool,
) -> Result<String, String> {
    let (params, _) = param_names(rows.iter().map(|r| &r.trial));
    let drop_order: Vec<String> = params.into_iter().rev().collect();
    let paints = leaderboard_paints(rows);
    screen_text(
        &leaderboard_table(rows, false),
        columns,
        &leaderboard_default(rows, key_metrics),
        &drop_order,
        width,
        color.then_some(paints.as_slice()),
    )
}

/// The trials table as `trials` prints it for people (see [`screen_text`]): every column,
/// fitted to `width`; when cutting is not enough, the slot, the attempt, the metrics that are
/// not in `key_metrics`, the duration, the parameters and then the key metrics are left out,
/// in that order. Rows painted by state when `color`.
pub fn trials_text(
    trials: &[TrialView],
    key_metrics: &[String],
    columns: &Columns,
    width: usize,
    color: bool,
) -> Result<String, String> {
    let t = trials_table(trials, false);
    let (params, metrics) = param_names(trials.iter());
    let (key, other): (Vec<String>, Vec<String>) = metrics
        .into_iter()
        .partition(|m| key_metrics.is_empty() || key_metrics.contains(m));
    let mut drop_order = vec!["slot".to_string(), "attempt".to_string()];
    drop_order.extend(other.into_iter().rev());
    drop_order.push("duration".into());
    drop_order.extend(params.into_iter().rev());
    drop_order.extend(key.into_iter().rev());
    let paints = trial_paints(trials);
    screen_text(
        &t,
        columns,
        &t.headers,
        &drop_order,
        width,
        color.then_some(paints.as_slice()),
    )
}

/// How each leaderboard row is painted: the best in bold green, infeasible ones grey.
pub fn leaderboard_paints(rows: &[Row]) -> Vec<Option<crate::view::color::Paint>> {
    use crate::view::color::Paint;
    rows.iter()
        .map(|r| {
            if r.best {
                Some(Paint::Best)
            } else if !r.feasible {
                Some(Paint::Dim)
            } else {
                None
            }
        })
        .collect()
}

/// How each trial row is painted: by state.
pub fn trial_paints(trials: &[TrialView]) -> Vec<Option<crate::view::color::Paint>> {
    trials
        .iter()
        .map(|t| crate::view::color::Paint::for_state(&t.state))
        .collect()
}

/// Trials as a table.
pub fn trials_table(trials: &[TrialView], exact: bool) -> Table {
    let (params, metrics) = param_names(trials.iter());
    let mut headers = vec!["trial".to_string(), "state".to_string()];
    headers.extend(params.iter().cloned());
    headers.extend(metrics.iter().cloned());
    headers.extend(["attempt", "slot", "duration", "reason", "note"].map(String::from));
    let rows = trials
        .iter()
        .map(|t| {
            let mut c = vec![t.trial.to_string(), t.state.clone()];
            c.extend(trial_cells(t, &params, &metrics, exact));
            c.push(t.attempt.to_string());
            c.push(match (&t.job_id, &t.job_state) {
                (Some(id), Some(st)) => {
                    format!("{} job {id} {st}", t.slot.clone().unwrap_or_default())
                }
                (Some(id), None) => format!("{} job {id}", t.slot.clone().unwrap_or_default()),
                _ => t.slot.clone().unwrap_or_default(),
            });
            c.push(
                t.duration_s
                    .map(|d| if exact { d.to_string() } else { format_secs(d) })
                    .unwrap_or_default(),
            );
            c.push(t.reason.clone().unwrap_or_default().replace('\n', " "));
            c.push(t.note.clone().unwrap_or_default().replace('\n', " "));
            c
        })
        .collect();
    Table { headers, rows }
}

/// A learning curve: one row per step, one column per metric, and a bar for the first metric
/// scaled between its smallest and largest value.
pub fn curve_table(reports: &[quantune_state::Report], exact: bool) -> Table {
    let names: Vec<String> = reports
        .iter()
        .flat_map(|r| r.values.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut headers = vec!["step".to_string()];
    headers.extend(names.iter().cloned());
    let first = names.first();
    let vals: Vec<f64> = reports
        .iter()
        .filter_map(|r| first.and_then(|f| r.values.get(f)).copied())
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !exact {
        if let Some(f) = first {
            headers.push(f.clone());
        }
    }
    let rows = reports
        .iter()
        .map(|r| {
            let mut c = vec![r.step.to_string()];
            c.extend(
                names
                    .iter()
                    .map(|n| r.values.get(n).map(|v| num(*v, exact)).unwrap_or_default()),
            );
            if !exact {
                let bar = first.and_then(|f| r.values.get(f)).map_or(0, |v| {
                    if hi > lo {
                        1 + ((v - lo) / (hi - lo) * 39.0).round() as usize
                    } else {
                        20
                    }
                });
                c.push("#".repeat(bar));
            }
            c
        })
        .collect();
    Table { headers, rows }
}

/// Studies as a table. For people `trials` reads `6/20`; `exact` (CSV) gives `trials` and
/// `max_trials` a column each, so that every cell is one number.
pub fn studies_table(studies: &[StudySummary], exact: bool) -> Table {
    let mut headers = vec!["name", "state", "trials"];
    if exact {
        headers.push("max_trials");
    }
    headers.extend([
        "running",
        "complete",
        "pruned",
        "infeasible",
        "failed",
        "strategy",
        "tags",
        "message",
    ]);
    let headers = headers.into_iter().map(String::from).collect();
    let rows = studies
        .iter()
        .map(|s| {
            let c = |k: &str| s.counts.get(k).copied().unwrap_or(0).to_string();
            let mut row = vec![s.name.clone(), s.state.clone()];
            if exact {
                row.extend([s.trials.to_string(), s.max_trials.to_string()]);
            } else {
                row.push(format!("{}/{}", s.trials, s.max_trials));
            }
            row.extend([
                c("running"),
                c("complete"),
                c("pruned"),
                c("infeasible"),
                c("failed"),
                s.strategy.clone(),
                s.tags.join(","),
                s.message.clone().unwrap_or_default(),
            ]);
            row
        })
        .collect();
    Table { headers, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_terminal_control_characters() {
        let t = Table {
            headers: vec!["metric\u{1b}[2J".into()],
            rows: vec![vec!["a\u{9b}b\tc".into()]],
        };
        let text = t.to_text();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("metric\\x1b[2J") && text.contains("a\\x9bb\\x09c"),
            "{text}"
        );
    }

    #[test]
    fn csv_quotes_and_text_aligns() {
        let t = Table {
            headers: vec!["a".into(), "b".into()],
            rows: vec![vec!["x,y".into(), "1".into()]],
        };
        assert_eq!(t.to_csv(), "a,b\n\"x,y\",1\n");
        assert_eq!(t.to_text(), "a    b\nx,y  1\n");
        assert_eq!(num(0.000012345, false), "1.234e-5");
        assert_eq!(num(13.5, false), "13.5");
        assert_eq!(num(0.0021571, false), "0.002157");
        assert_eq!(num(2800.636, false), "2801");
        assert_eq!(num(0.0, false), "0");
    }
}
