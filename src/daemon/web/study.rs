//! The index (every study, and the form that compares two) and a study's page: summary,
//! sortable leaderboard, failures, plots.

use super::{
    document, esc, figure, html, not_found, sortable, study_href, trial_link, trials_href, Cell,
};
use crate::daemon::api::AppState;
use crate::model::wire::{StudySummary, TrialView};
use crate::view::plot::{PlotKind, PlotOptions, StudyData};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use quantune_state::TrialState;
use std::fmt::Write as _;

fn studies_table(studies: &[StudySummary]) -> String {
    let headers = [
        "study",
        "state",
        "trials",
        "complete",
        "pruned",
        "infeasible",
        "failed",
        "strategy",
        "message",
    ]
    .map(String::from);
    let rows = studies
        .iter()
        .map(|s| {
            let c = |k: &str| s.counts.get(k).copied().unwrap_or(0).to_string();
            let mut name = Cell::text(&s.name);
            name.html = format!(
                "<a href=\"{}\">{}</a>",
                esc(&study_href(&s.name)),
                esc(&s.name)
            );
            let cells = vec![
                name,
                Cell::text(&s.state),
                Cell::keyed(
                    &format!("{}/{}", s.trials, s.max_trials),
                    &s.trials.to_string(),
                ),
                Cell::text(&c("complete")),
                Cell::text(&c("pruned")),
                Cell::text(&c("infeasible")),
                Cell::text(&c("failed")),
                Cell::text(&s.strategy),
                Cell::wrapping(s.message.as_deref().unwrap_or("")),
            ];
            (String::new(), cells)
        })
        .collect();
    sortable("studies", &headers, rows)
}

/// The form that opens `/ui/compare?a=…&b=…`.
pub(super) fn compare_form(studies: &[StudySummary], a: Option<&str>, b: Option<&str>) -> String {
    if studies.len() < 2 {
        return String::new();
    }
    let options = |chosen: Option<&str>, default: usize| {
        let mut out = String::new();
        for (i, s) in studies.iter().enumerate() {
            let selected = chosen.map_or(i == default, |c| c == s.name);
            let _ = write!(
                out,
                "<option value=\"{0}\"{1}>{0}</option>",
                esc(&s.name),
                if selected { " selected" } else { "" }
            );
        }
        out
    };
    format!(
        "<form id=\"compare\" action=\"/ui/compare\" method=\"get\"><b>Compare</b> \
         <select name=\"a\">{}</select> with <select name=\"b\">{}</select> \
         <button type=\"submit\">compare</button></form>",
        options(a, 0),
        options(b, 1)
    )
}

pub(super) async fn index(State(s): State<AppState>) -> Response {
    let studies = s.scheduler.studies();
    let body = format!(
        "<h1>quantune</h1><p class=\"meta\">{} stud{} · read-only view · refreshes every 30 s</p>{}{}",
        studies.len(),
        if studies.len() == 1 { "y" } else { "ies" },
        studies_table(&studies),
        compare_form(&studies, None, None)
    );
    html(StatusCode::OK, document("quantune", true, &body))
}

/// The line under a study's title: state, trials, counts by state, strategy.
pub(super) fn summary_line(s: &StudySummary) -> String {
    let counts: Vec<String> = ["complete", "pruned", "infeasible", "failed", "running"]
        .iter()
        .filter_map(|k| {
            let n = s.counts.get(*k).copied().unwrap_or(0);
            (n > 0).then(|| format!("{n} {k}"))
        })
        .collect();
    format!(
        "state <b>{}</b>{} · {} of {} trials{}{} · strategy {}",
        esc(&s.state),
        s.message
            .as_deref()
            .map(|m| format!(" ({})", esc(m)))
            .unwrap_or_default(),
        s.trials,
        s.max_trials,
        if s.imported > 0 {
            format!(" + {} imported", s.imported)
        } else {
            String::new()
        },
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        },
        esc(&s.strategy)
    )
}

pub(super) async fn page(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let summary = match s.scheduler.study(&name) {
        Ok(v) => v,
        Err(e) => return not_found(&e.to_string()),
    };
    let rows = s.scheduler.leaderboard(&name, None).unwrap_or_default();
    // Only the trials the failures table shows are turned into views.
    let failures: Vec<TrialView> = s
        .scheduler
        .snapshot(&name)
        .map(|snap| {
            snap.trials
                .iter()
                .filter(|t| {
                    matches!(
                        t.state,
                        TrialState::Failed
                            | TrialState::Infeasible
                            | TrialState::Pruned
                            | TrialState::Cancelled
                    )
                })
                .map(TrialView::from)
                .collect()
        })
        .unwrap_or_default();
    let export = s.scheduler.export(&name);
    let link = trials_href(&name);
    // Drawing takes a while on a large study: off the async workers.
    let plots = tokio::task::spawn_blocking(move || {
        let data = export
            .map_err(|e| e.to_string())
            .and_then(|e| StudyData::from_export(&e))?;
        let opts = PlotOptions {
            width: 900,
            height: 480,
            ..PlotOptions::default()
        };
        let rendered: Vec<(PlotKind, Result<String, String>)> = PlotKind::ALL
            .iter()
            .map(|k| {
                let svg = crate::view::plot::render_svg_linked(&data, *k, &opts, Some(&link));
                (*k, svg.map_err(|e| e.to_string()))
            })
            .collect();
        Ok::<_, String>(rendered)
    })
    .await
    .unwrap_or_else(|e| Err(format!("drawing failed: {e}")));
    let mut body = String::new();
    let _ = write!(
        body,
        "<p><a href=\"/ui/\">all studies</a></p><h1>{}</h1><p class=\"meta\" id=\"summary\">{}</p>",
        esc(&summary.name),
        summary_line(&summary)
    );
    if let Some(d) = &summary.description {
        let _ = write!(body, "<p>{}</p>", esc(d));
    }
    if !summary.tags.is_empty() || summary.notes.is_some() {
        let _ = write!(
            body,
            "<p class=\"meta\" id=\"notes\">tags: {} · notes: {}</p>",
            esc(&summary.tags.join(", ")),
            esc(summary.notes.as_deref().unwrap_or("—"))
        );
    }
    body.push_str("<h2>Leaderboard</h2>");
    body.push_str(&leaderboard_html(&name, &rows));
    body.push_str("<h2>Failures</h2>");
    body.push_str(&failures_html(&name, &failures));
    body.push_str("<h2>Plots</h2>");
    match plots {
        Ok(plots) => {
            for (kind, svg) in plots {
                body.push_str(&figure(kind.name(), svg));
            }
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"nodata\">{}</p>", esc(&e));
        }
    }
    let running = !matches!(summary.state.as_str(), "completed" | "failed" | "cancelled");
    html(
        StatusCode::OK,
        document(&format!("quantune: {}", summary.name), running, &body),
    )
}

fn leaderboard_html(study: &str, rows: &[crate::model::leaderboard::Row]) -> String {
    if rows.is_empty() {
        return "<p class=\"nodata\" id=\"leaderboard\">no finished trials yet</p>".into();
    }
    let shown = crate::view::table::leaderboard_table(rows, false);
    let exact = crate::view::table::leaderboard_table(rows, true);
    let body = rows
        .iter()
        .zip(shown.rows.iter().zip(&exact.rows))
        .map(|(r, (cells, keys))| {
            let class = if r.best {
                " class=\"best\""
            } else if !r.feasible {
                " class=\"infeasible\""
            } else {
                ""
            };
            let attrs = format!("{class} data-trial=\"{}\"", r.trial.trial);
            let cells = shown
                .headers
                .iter()
                .zip(cells.iter().zip(keys))
                .map(|(h, (c, k))| match h.as_str() {
                    "trial" => Cell {
                        html: trial_link(study, r.trial.trial),
                        ..Cell::text(c)
                    },
                    "note" => Cell::wrapping(c),
                    _ => Cell::keyed(c, k),
                })
                .collect();
            (attrs, cells)
        })
        .collect();
    sortable("leaderboard", &shown.headers, body)
}

/// Failed, infeasible, pruned and cancelled trials (`failed`), with why.
fn failures_html(study: &str, failed: &[TrialView]) -> String {
    if failed.is_empty() {
        return "<p class=\"nodata\" id=\"failures\">no failed, infeasible or pruned trials</p>"
            .into();
    }
    let headers = [
        "trial",
        "state",
        "attempts",
        "reason",
        "stderr (last line)",
        "duration",
    ]
    .map(String::from);
    let rows = failed
        .iter()
        .map(|t| {
            let last_line = t
                .stderr_tail
                .as_deref()
                .and_then(|s| s.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("");
            let cells = vec![
                Cell {
                    html: trial_link(study, t.trial),
                    ..Cell::text(&t.trial.to_string())
                },
                Cell::text(&t.state),
                Cell::text(&t.attempt.to_string()),
                Cell::wrapping(t.reason.as_deref().unwrap_or("")),
                Cell::wrapping(last_line),
                Cell::keyed(
                    &t.duration_s
                        .map(crate::model::duration::format_secs)
                        .unwrap_or_default(),
                    &t.duration_s.map(|d| d.to_string()).unwrap_or_default(),
                ),
            ];
            (
                format!(" class=\"{}\" data-trial=\"{}\"", esc(&t.state), t.trial),
                cells,
            )
        })
        .collect();
    sortable("failures", &headers, rows)
}
