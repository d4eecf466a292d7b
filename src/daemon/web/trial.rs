//! A trial's page: state and reason, parameters, metrics, its learning curve, the tail of its
//! stderr, earlier attempts, and the record itself as JSON.

use super::{document, esc, figure, html, not_found, sortable, study_href, Cell};
use crate::daemon::api::AppState;
use crate::view::plot::{PlotKind, PlotOptions, StudyData};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A two-column table (name, value) with an id.
fn pairs(id: &str, rows: impl IntoIterator<Item = (String, String)>) -> String {
    let rows: Vec<(String, Vec<Cell>)> = rows
        .into_iter()
        .map(|(k, v)| (String::new(), vec![Cell::text(&k), Cell::wrapping(&v)]))
        .collect();
    if rows.is_empty() {
        return format!("<p class=\"nodata\" id=\"{id}\">none</p>");
    }
    sortable(id, &["name".to_string(), "value".to_string()], rows)
}

pub(super) async fn page(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
) -> Response {
    let Ok(n) = n.parse::<u64>() else {
        return not_found(&format!("'{n}' is not a trial number"));
    };
    let snapshot = match s.scheduler.snapshot(&name) {
        Ok(v) => v,
        Err(e) => return not_found(&e.to_string()),
    };
    let (view, reports) = match s.scheduler.trial(&name, n) {
        Ok(v) => v,
        Err(e) => return not_found(&e.to_string()),
    };
    let record = snapshot.trials.get(n).cloned();
    let def = (*snapshot.def).clone();
    let curve = tokio::task::spawn_blocking({
        let reports = reports.clone();
        move || {
            let record = record.ok_or("the trial is gone")?;
            let data = StudyData {
                def,
                reports: if reports.is_empty() {
                    BTreeMap::new()
                } else {
                    [(n, reports)].into()
                },
                trials: vec![record],
            };
            let opts = PlotOptions {
                width: 760,
                height: 360,
                ..PlotOptions::default()
            };
            crate::view::plot::render_svg(&data, PlotKind::Curves, &opts).map_err(|e| e.to_string())
        }
    })
    .await
    .unwrap_or_else(|e| Err(format!("drawing failed: {e}")));
    let mut body = String::new();
    let study = esc(&name);
    let _ = write!(
        body,
        "<p><a href=\"/ui/\">all studies</a> › <a href=\"{}\">{study}</a></p>\
         <h1>trial {n} of {study}</h1><p class=\"meta\" id=\"state\">state <b>{}</b>{} · attempt {}{}</p>",
        esc(&study_href(&name)),
        esc(&view.state),
        view.reason
            .as_deref()
            .map(|r| format!(": <span id=\"reason\">{}</span>", esc(r)))
            .unwrap_or_default(),
        view.attempt,
        view.duration_s
            .map(|d| format!(" · {}", esc(&crate::model::duration::format_secs(d))))
            .unwrap_or_default(),
    );
    body.push_str("<h2>Parameters</h2>");
    body.push_str(&pairs(
        "params",
        view.params.iter().map(|(k, v)| (k.clone(), v.to_string())),
    ));
    body.push_str("<h2>Metrics</h2>");
    body.push_str(&pairs(
        "metrics",
        view.metrics
            .iter()
            .map(|(k, v)| (k.clone(), crate::view::table::num(*v, true)))
            .chain(view.info.iter().map(|(k, v)| (k.clone(), v.clone()))),
    ));
    body.push_str("<h2>Learning curve</h2>");
    body.push_str(&figure("curve", curve));
    body.push_str("<h2>stderr (last 4 KiB)</h2>");
    match view.stderr_tail.as_deref().filter(|s| !s.is_empty()) {
        Some(tail) => {
            let _ = write!(body, "<pre id=\"stderr\">{}</pre>", esc(tail));
        }
        None => body.push_str("<p class=\"nodata\" id=\"stderr\">nothing on stderr</p>"),
    }
    if !view.failed_attempts.is_empty() {
        body.push_str("<h2>Earlier attempts</h2>");
        body.push_str(&pairs(
            "attempts",
            view.failed_attempts
                .iter()
                .map(|a| (format!("attempt {}", a.attempt), a.reason.clone())),
        ));
    }
    body.push_str("<h2>Record</h2>");
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "trial": view,
        "reports": reports,
    }))
    .unwrap_or_default();
    let _ = write!(body, "<pre id=\"record\">{}</pre>", esc(&json));
    let running = matches!(view.state.as_str(), "running" | "queued");
    html(
        StatusCode::OK,
        document(&format!("quantune: {name} trial {n}"), running, &body),
    )
}
