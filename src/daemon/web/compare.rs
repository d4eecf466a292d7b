//! Two studies side by side (`/ui/compare?a=X&b=Y`): a summary of each (state, counts, the
//! best trial's objectives and parameters) and both on one plot (shared Pareto fronts, or the
//! shared first objective by trial).

use super::study::summary_line;
use super::{
    document, esc, figure, html, not_found, sortable, study_href, trial_link, trials_href, Cell,
};
use crate::daemon::api::AppState;
use crate::model::wire::StudySummary;
use crate::view::plot::{PlotOptions, StudyData};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Rows of the side-by-side summary: what, then one value per study.
fn summary_table(studies: [&StudySummary; 2]) -> String {
    let mut rows: Vec<(String, [String; 2])> = Vec::new();
    let both = |f: &dyn Fn(&StudySummary) -> String| [f(studies[0]), f(studies[1])];
    rows.push(("state".into(), both(&|s| s.state.clone())));
    rows.push((
        "trials".into(),
        both(&|s| format!("{}/{}", s.trials, s.max_trials)),
    ));
    for k in ["complete", "pruned", "infeasible", "failed"] {
        rows.push((
            k.into(),
            both(&|s| s.counts.get(k).copied().unwrap_or(0).to_string()),
        ));
    }
    rows.push(("strategy".into(), both(&|s| s.strategy.clone())));
    rows.push((
        "best trial".into(),
        both(&|s| {
            s.best
                .as_ref()
                .map(|b| b.trial.to_string())
                .unwrap_or("-".into())
        }),
    ));
    let metrics: BTreeSet<&String> = studies
        .iter()
        .filter_map(|s| s.best.as_ref())
        .flat_map(|b| b.metrics.keys())
        .collect();
    for m in metrics {
        rows.push((
            format!("best: {m}"),
            both(&|s| {
                s.best
                    .as_ref()
                    .and_then(|b| b.metrics.get(m))
                    .map(|v| crate::view::table::num(*v, false))
                    .unwrap_or_default()
            }),
        ));
    }
    let params: BTreeSet<&String> = studies
        .iter()
        .filter_map(|s| s.best.as_ref())
        .flat_map(|b| b.params.keys())
        .collect();
    for p in params {
        rows.push((
            format!("best: {p}"),
            both(&|s| {
                s.best
                    .as_ref()
                    .and_then(|b| b.params.get(p))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            }),
        ));
    }
    let headers = [
        "".to_string(),
        studies[0].name.clone(),
        studies[1].name.clone(),
    ];
    let body = rows
        .into_iter()
        .map(|(what, [a, b])| {
            let mut cells = vec![Cell::text(&what), Cell::wrapping(&a), Cell::wrapping(&b)];
            if what == "best trial" {
                for (c, s) in cells[1..].iter_mut().zip(studies) {
                    if let Some(best) = &s.best {
                        c.html = trial_link(&s.name, best.trial);
                    }
                }
            }
            (String::new(), cells)
        })
        .collect();
    sortable("compare-summary", &headers, body)
}

pub(super) async fn page(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let all = s.scheduler.studies();
    let (Some(a), Some(b)) = (q.get("a"), q.get("b")) else {
        let body = format!(
            "<p><a href=\"/ui/\">all studies</a></p><h1>compare two studies</h1>{}",
            super::study::compare_form(&all, None, None)
        );
        return html(StatusCode::OK, document("quantune: compare", false, &body));
    };
    let (sa, sb) = match (s.scheduler.study(a), s.scheduler.study(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => return not_found(&e.to_string()),
    };
    let exports = (s.scheduler.export(a), s.scheduler.export(b));
    let links = [trials_href(a), trials_href(b)];
    let plot = tokio::task::spawn_blocking(move || {
        let read = |e: crate::scheduler::Result<Vec<u8>>| {
            e.map_err(|e| e.to_string())
                .and_then(|e| StudyData::from_export(&e))
        };
        let (da, db) = (read(exports.0)?, read(exports.1)?);
        let opts = PlotOptions {
            width: 1000,
            height: 520,
            ..PlotOptions::default()
        };
        crate::view::plot::render_compare_svg(&da, &db, &opts, [&links[0], &links[1]])
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("drawing failed: {e}")));
    let mut body = format!(
        "<p><a href=\"/ui/\">all studies</a></p><h1>{} vs {}</h1>",
        esc(&sa.name),
        esc(&sb.name)
    );
    body.push_str(&super::study::compare_form(&all, Some(a), Some(b)));
    body.push_str("<div class=\"side\">");
    for st in [&sa, &sb] {
        let _ = write!(
            body,
            "<div><h2><a href=\"{}\">{}</a></h2><p class=\"meta\">{}</p></div>",
            esc(&study_href(&st.name)),
            esc(&st.name),
            summary_line(st)
        );
    }
    body.push_str("</div>");
    body.push_str(&summary_table([&sa, &sb]));
    body.push_str(&figure("compare", plot));
    html(
        StatusCode::OK,
        document(&format!("quantune: {a} vs {b}"), false, &body),
    )
}
