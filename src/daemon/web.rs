//! The read-only web page: every study's state, and per study its leaderboard and plots (SVG
//! inline). The daemon serves it under `/ui/` on its API socket when the config says
//! `web = true`; a browser reaches it through `quantune web` (a loopback HTTP listener that
//! forwards GET requests for `/ui/…`, and nothing else, to the socket) or an SSH forward of the
//! socket. Nothing on the page changes a study; see `docs/WEB.md`.

use crate::client::http::{Client, Endpoint};
use crate::daemon::api::AppState;
use crate::model::wire::StudySummary;
use crate::view::plot::{PlotError, PlotKind, PlotOptions, StudyData};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::fmt::Write as _;
use std::sync::Arc;

/// The page's routes (merged into the API router when `web = true`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/studies/{name}", get(study_page))
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;font-size:14px;margin:0.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}\
th{background:#f4f4f4}tr.best td{background:#e8f5e9;font-weight:600}\
tr.infeasible td{color:#888}figure{margin:0 0 2em}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
.nodata{color:#888;font-style:italic}.meta{color:#555}a{color:#1f77b4}";

/// Marks each inline SVG with the size the browser laid it out at (`data-rendered`), so a
/// headless browser's DOM dump shows that the plots rendered.
const SCRIPT: &str = "document.querySelectorAll('figure svg').forEach(function(s){\
var b=s.getBBox();s.setAttribute('data-rendered',Math.round(b.width)+'x'+Math.round(b.height));});";

fn page(title: &str, refresh: bool, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{}<title>{}</title>\
         <style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"30\">"
        } else {
            ""
        },
        esc(title)
    )
}

fn studies_table(studies: &[StudySummary]) -> String {
    let mut out = String::from(
        "<table id=\"studies\"><tr><th>study</th><th>state</th><th>trials</th><th>complete</th>\
         <th>failed</th><th>strategy</th><th>message</th></tr>",
    );
    for s in studies {
        let c = |k: &str| s.counts.get(k).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<tr><td><a href=\"/ui/studies/{}\">{}</a></td><td>{}</td><td>{}/{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            crate::client::http::segment(&s.name),
            esc(&s.name),
            esc(&s.state),
            s.trials,
            s.max_trials,
            c("complete"),
            c("failed"),
            esc(&s.strategy),
            esc(s.message.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table>");
    out
}

async fn index(State(s): State<AppState>) -> Response {
    let studies = s.scheduler.studies();
    let body = format!(
        "<h1>quantune</h1><p class=\"meta\">{} stud{} · read-only view · refreshes every 30 s</p>{}",
        studies.len(),
        if studies.len() == 1 { "y" } else { "ies" },
        studies_table(&studies)
    );
    html(StatusCode::OK, page("quantune", true, &body))
}

async fn study_page(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    let summary = match s.scheduler.study(&name) {
        Ok(v) => v,
        Err(e) => {
            let body = format!(
                "<h1>not found</h1><p>{}</p><p><a href=\"/ui/\">all studies</a></p>",
                esc(&e.to_string())
            );
            return html(
                StatusCode::NOT_FOUND,
                page("quantune: not found", false, &body),
            );
        }
    };
    let rows = s.scheduler.leaderboard(&name, None).unwrap_or_default();
    let export = s.scheduler.export(&name);
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
        let rendered: Vec<(PlotKind, Result<String, PlotError>)> = PlotKind::ALL
            .iter()
            .map(|k| (*k, crate::view::plot::render_svg(&data, *k, &opts)))
            .collect();
        Ok::<_, String>(rendered)
    })
    .await
    .unwrap_or_else(|e| Err(format!("drawing failed: {e}")));
    let mut body = String::new();
    let _ = write!(
        body,
        "<p><a href=\"/ui/\">all studies</a></p><h1>{}</h1><p class=\"meta\" id=\"summary\">state <b>{}</b>{} · {} of {} trials{} · strategy {}</p>",
        esc(&summary.name),
        esc(&summary.state),
        summary
            .message
            .as_deref()
            .map(|m| format!(" ({})", esc(m)))
            .unwrap_or_default(),
        summary.trials,
        summary.max_trials,
        if summary.imported > 0 {
            format!(" + {} imported", summary.imported)
        } else {
            String::new()
        },
        esc(&summary.strategy)
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
    body.push_str(&leaderboard_html(&rows));
    body.push_str("<h2>Plots</h2>");
    match plots {
        Ok(plots) => {
            for (kind, svg) in plots {
                let _ = write!(body, "<figure id=\"plot-{}\">", kind.name());
                match svg {
                    Ok(svg) => body.push_str(strip_xml_declaration(&svg)),
                    Err(e) => {
                        let _ = write!(
                            body,
                            "<p class=\"nodata\">{}: {}</p>",
                            kind.name(),
                            esc(&e.to_string())
                        );
                    }
                }
                body.push_str("</figure>");
            }
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"nodata\">{}</p>", esc(&e));
        }
    }
    let running = !matches!(summary.state.as_str(), "completed" | "failed" | "cancelled");
    html(
        StatusCode::OK,
        page(&format!("quantune: {}", summary.name), running, &body),
    )
}

fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

fn leaderboard_html(rows: &[crate::model::leaderboard::Row]) -> String {
    if rows.is_empty() {
        return "<p class=\"nodata\" id=\"leaderboard\">no finished trials yet</p>".into();
    }
    let table = crate::view::table::leaderboard_table(rows, false);
    let mut out = String::from("<table id=\"leaderboard\"><thead><tr>");
    for h in &table.headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (r, cells) in rows.iter().zip(&table.rows) {
        let class = if r.best {
            " class=\"best\""
        } else if !r.feasible {
            " class=\"infeasible\""
        } else {
            ""
        };
        let _ = write!(out, "<tr{class} data-trial=\"{}\">", r.trial.trial);
        for c in cells {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The name of the cookie that carries the forwarder's token once the browser has shown it.
const TOKEN_COOKIE: &str = "quantune_web_token";

/// Who may use one `quantune web` forwarder: whoever shows its token (from the URL it printed,
/// or the cookie set from it), asking for it by its own address.
#[derive(Clone)]
struct Guard {
    /// The per-start random token (32 hex digits).
    token: Arc<str>,
    /// The `Host` values a request may carry: the bound address, and `localhost` with its port.
    hosts: Arc<[String]>,
}

impl Guard {
    /// A fresh random token for a forwarder bound to `local`.
    fn new(local: std::net::SocketAddr) -> Guard {
        let bytes: [u8; 16] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let port = local.port();
        let hosts = vec![local.to_string(), format!("localhost:{port}")];
        Guard {
            token: token.into(),
            hosts: hosts.into(),
        }
    }

    /// Why `req` is refused, if it is: a foreign `Host` (DNS rebinding), or no valid token.
    /// `Ok(true)` when the token came in the query (the answer then sets the cookie).
    fn check(&self, req: &Request) -> Result<bool, Box<Response>> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(Box::new((
                StatusCode::FORBIDDEN,
                format!(
                    "Host \"{host}\" is not this forwarder's address; open http://{}/ui/ as `quantune web` printed it\n",
                    self.hosts[0]
                ),
            )
                .into_response()));
        }
        let from_query = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
        if from_query.is_some_and(|t| same(t, &self.token)) {
            return Ok(true);
        }
        let from_cookie = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            .any(|t| same(t, &self.token));
        if from_cookie {
            return Ok(false);
        }
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this page needs the token in the URL that `quantune web` printed (…/ui/?token=…)\n",
            )
                .into_response(),
        ))
    }
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `path_and_query` without its `token=` parameter.
fn without_token(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        None => path_and_query.to_string(),
        Some((path, query)) => {
            let rest: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
                .collect();
            if rest.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", rest.join("&"))
            }
        }
    }
}

/// `quantune web`: serves the daemon's page on a loopback address for a browser, forwarding
/// GET requests under `/ui/` to the daemon (its socket, or its TCP listener with the token
/// when `--url` is given), to requests that carry this start's random token and name this
/// address as their `Host`. Prints the URL (with the token), runs until Ctrl-C.
pub async fn proxy(endpoint: Endpoint, listen: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let stop = crate::signal::shutdown_signal();
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: not an IP address and port"))?;
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "--listen {listen}: not a loopback address; `quantune web` serves 127.0.0.1 or ::1 only (from another machine, use ssh -L, see docs/WEB.md)"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen there"))?;
    let local = listener.local_addr()?;
    // Check the daemon serves the page before saying where it is.
    let client = Client::to(endpoint.clone());
    let (status, _, _) = client
        .send(hyper::Method::GET, "/ui/", None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if status == StatusCode::NOT_FOUND {
        anyhow::bail!(
            "the daemon does not serve the web page: set `web = true` in its config and restart it"
        );
    }
    let guard = Guard::new(local);
    println!(
        "serving the quantune web page at http://{local}/ui/?token={} (Ctrl-C stops)",
        guard.token
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let app =
        Router::new().fallback(move |req: Request| forward(endpoint.clone(), guard.clone(), req));
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = quit_tx.send(true);
    });
    crate::daemon::listen::serve(
        listener,
        app,
        crate::daemon::listen::HttpLimits {
            max_connections: 256,
            ..Default::default()
        },
        quit_rx,
        "web",
    )
    .await;
    Ok(())
}

async fn forward(endpoint: Endpoint, guard: Guard, req: Request) -> Response {
    let with_query = match guard.check(&req) {
        Ok(q) => q,
        Err(refused) => return *refused,
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| without_token(p.as_str()))
        .unwrap_or_else(|| "/".into());
    let method = req.method().clone();
    drop(req);
    let mut resp = answer(endpoint, method, &path).await;
    if with_query {
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            guard.token
        );
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn answer(endpoint: Endpoint, method: axum::http::Method, path: &str) -> Response {
    if method != axum::http::Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "the web page is read-only\n",
        )
            .into_response();
    }
    if path == "/" {
        return redirect("/ui/");
    }
    if !(path == "/ui" || path.starts_with("/ui/") || path.starts_with("/ui?")) {
        return (
            StatusCode::NOT_FOUND,
            "only the web page (/ui/) is served here\n",
        )
            .into_response();
    }
    match Client::to(endpoint)
        .send(hyper::Method::GET, path, None)
        .await
    {
        Ok((status, content_type, body)) => {
            let mut resp = (status, body).into_response();
            if let Some(ct) = content_type.and_then(|c| c.parse().ok()) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            if status == StatusCode::FOUND {
                resp.headers_mut()
                    .insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_forwarded_path() {
        assert_eq!(without_token("/ui/?token=ab"), "/ui/");
        assert_eq!(without_token("/ui/x?a=1&token=ab&b=2"), "/ui/x?a=1&b=2");
        assert_eq!(without_token("/ui/x"), "/ui/x");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
