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

/// A number for a table: short for people, exact for CSV.
pub fn num(v: f64, exact: bool) -> String {
    if exact {
        return v.to_string();
    }
    let a = v.abs();
    if v == 0.0 || (1e-3..1e6).contains(&a) {
        // Four significant digits.
        let decimals = if v == 0.0 {
            0
        } else {
            (3 - a.log10().floor() as i32).max(0) as usize
        };
        let s = format!("{v:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        format!("{v:.3e}")
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

/// Studies as a table.
pub fn studies_table(studies: &[StudySummary]) -> Table {
    let headers = [
        "name", "state", "trials", "running", "complete", "failed", "strategy", "tags", "message",
    ]
    .map(String::from)
    .to_vec();
    let rows = studies
        .iter()
        .map(|s| {
            let c = |k: &str| s.counts.get(k).copied().unwrap_or(0).to_string();
            vec![
                s.name.clone(),
                s.state.clone(),
                format!("{}/{}", s.trials, s.max_trials),
                c("running"),
                c("complete"),
                c("failed"),
                s.strategy.clone(),
                s.tags.join(","),
                s.message.clone().unwrap_or_default(),
            ]
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
