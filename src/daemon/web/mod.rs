//! The read-only web page: every study's state; per study its leaderboard (sortable), its
//! failures and its plots (inline SVG, each point a link to its trial with a tooltip); a page
//! per trial; two studies compared. The daemon serves it under `/ui/` on its API socket when
//! the config says `web = true`; a browser reaches it through `quantune web` (`proxy.rs`: a
//! loopback HTTP listener that forwards GET requests for `/ui/…`, and nothing else, to the
//! socket) or an SSH forward of the socket. Nothing on the page changes a study; see
//! `docs/WEB.md`.
//!
//! Server-rendered HTML, inline SVG, and one small script (sorting, tooltips); no external
//! resources. Every text that comes from a study (names, parameters, choices, metric names,
//! reasons, stderr) is escaped.

mod compare;
mod proxy;
mod study;
mod trial;

pub use proxy::proxy;

use crate::daemon::api::AppState;
use crate::view::markup::escape as esc;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::fmt::Write as _;

/// The page's routes (merged into the API router when `web = true`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(study::index))
        .route("/ui/compare", get(compare::page))
        .route("/ui/studies/{name}", get(study::page))
        .route("/ui/studies/{name}/trials/{n}", get(trial::page))
        .route("/ui/{*rest}", get(unknown))
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

/// The 404 page: an HTML page (not JSON) saying what was not found, with a way back.
fn not_found(what: &str) -> Response {
    let body = format!(
        "<h1>not found</h1><p id=\"missing\">{}</p><p><a href=\"/ui/\">all studies</a></p>",
        esc(what)
    );
    html(
        StatusCode::NOT_FOUND,
        document("quantune: not found", false, &body),
    )
}

async fn unknown(uri: Uri) -> Response {
    not_found(&format!("there is no page at {}", uri.path()))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;font-size:14px;margin:0.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap;vertical-align:top}\
th{background:#f4f4f4}table.sortable th{cursor:pointer;user-select:none}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:12em;max-width:40em}\
.wide{max-width:100%;overflow-x:auto}\
tr.best td{background:#e8f5e9;font-weight:600}tr.infeasible td{color:#888}\
figure{margin:0 0 2em}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
.nodata{color:#888;font-style:italic}.meta{color:#555}a{color:#1f77b4}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:8px;max-height:32em;overflow:auto;font-size:13px}\
.side{display:flex;flex-wrap:wrap;gap:2em}.side>div{flex:1 1 24em}\
#tip{position:absolute;z-index:10;background:#fff;border:1px solid #888;border-radius:3px;\
padding:4px 8px;font-size:13px;max-width:40em;box-shadow:0 1px 4px rgba(0,0,0,.2)}";

/// The page's script: records each inline SVG's laid-out size (`data-rendered`, so that a
/// headless browser's DOM shows the plots rendered); sorts `table.sortable` by a clicked
/// header (numbers as numbers, by each cell's exact `data-v` where it has one; a second click
/// reverses); shows a tooltip (`#tip`) naming the trial under the pointer on a plot, with a
/// link to its page (the SVG's own `<title>` tooltips are taken out so that there is one).
const SCRIPT: &str = r#"(function(){
document.querySelectorAll('figure svg').forEach(function(s){var b=s.getBBox();
s.setAttribute('data-rendered',Math.round(b.width)+'x'+Math.round(b.height));});
function key(td){var v=td.getAttribute('data-v');return v===null?td.textContent:v;}
function num(s){return s.trim()!==''&&isFinite(Number(s));}
function cmp(a,b){if(num(a)&&num(b))return Number(a)-Number(b);if(num(a))return -1;if(num(b))return 1;
return a.localeCompare(b,undefined,{numeric:true});}
document.querySelectorAll('table.sortable').forEach(function(t){
var hs=t.querySelectorAll('thead th');hs.forEach(function(th,i){th.tabIndex=0;
function sort(){var asc=th.getAttribute('aria-sort')!=='ascending';
hs.forEach(function(h){h.removeAttribute('aria-sort');});th.setAttribute('aria-sort',asc?'ascending':'descending');
var tb=t.tBodies[0];var rows=Array.prototype.slice.call(tb.rows);
rows.sort(function(r,s){var c=cmp(key(r.cells[i]),key(s.cells[i]));return asc?c:-c;});
rows.forEach(function(r){tb.appendChild(r);});}
th.addEventListener('click',sort);th.addEventListener('keydown',function(e){if(e.key==='Enter')sort();});});});
var tip=document.createElement('div');tip.id='tip';tip.hidden=true;document.body.appendChild(tip);
document.querySelectorAll('svg [data-trial] > title').forEach(function(t){t.remove();});
document.addEventListener('mouseover',function(ev){
var e=ev.target.closest?ev.target.closest('svg [data-trial]'):null;
if(!e){if(!tip.contains(ev.target))tip.hidden=true;return;}
tip.textContent=e.getAttribute('data-label');var a=e.closest('a');
if(a){var l=document.createElement('a');l.href=a.getAttribute('href');l.textContent='open trial '+e.getAttribute('data-trial');
tip.appendChild(document.createElement('br'));tip.appendChild(l);}
tip.setAttribute('data-trial',e.getAttribute('data-trial'));
tip.style.left=(ev.pageX+12)+'px';tip.style.top=(ev.pageY+12)+'px';tip.hidden=false;});
})();"#;

fn document(title: &str, refresh: bool, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">{}<title>{}</title>\
         <style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>\n",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"30\">"
        } else {
            ""
        },
        esc(title)
    )
}

/// The path of a study's page.
fn study_href(name: &str) -> String {
    format!("/ui/studies/{}", crate::client::http::segment(name))
}

/// The prefix of a study's trial pages (the trial number follows).
fn trials_href(name: &str) -> String {
    format!("{}/trials/", study_href(name))
}

/// A link to trial `n` of `study`, showing its number.
fn trial_link(study: &str, n: u64) -> String {
    format!("<a href=\"{}{n}\">{n}</a>", esc(&trials_href(study)))
}

/// One table cell: its HTML (escaped already), the exact value it sorts by, whether its text
/// wraps (notes, reasons).
struct Cell {
    html: String,
    key: Option<String>,
    wrap: bool,
}

impl Cell {
    /// A cell showing `text`.
    fn text(text: &str) -> Cell {
        Cell {
            html: esc(text),
            key: None,
            wrap: false,
        }
    }

    /// A cell showing `text` that sorts by `key`.
    fn keyed(text: &str, key: &str) -> Cell {
        Cell {
            key: (key != text).then(|| key.to_string()),
            ..Cell::text(text)
        }
    }

    /// A cell whose long text wraps instead of widening the table.
    fn wrapping(text: &str) -> Cell {
        Cell {
            wrap: true,
            ..Cell::text(text)
        }
    }
}

/// A table sorted by clicking a header, in a box that scrolls sideways when it is wider than
/// the page. `rows` are `(attributes of the <tr>, cells)`.
fn sortable(id: &str, headers: &[String], rows: Vec<(String, Vec<Cell>)>) -> String {
    let mut out = format!("<div class=\"wide\"><table id=\"{id}\" class=\"sortable\"><thead><tr>");
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for (attrs, cells) in rows {
        let _ = write!(out, "<tr{attrs}>");
        for c in cells {
            out.push_str("<td");
            if c.wrap {
                out.push_str(" class=\"wrap\"");
            }
            if let Some(k) = &c.key {
                let _ = write!(out, " data-v=\"{}\"", esc(k));
            }
            let _ = write!(out, ">{}</td>", c.html);
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `svg` without its XML declaration, for inlining.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// A `<figure id="plot-{id}">` holding `svg`, or the reason it could not be drawn.
fn figure(id: &str, svg: Result<String, String>) -> String {
    match svg {
        Ok(svg) => format!(
            "<figure id=\"plot-{id}\">{}</figure>",
            strip_xml_declaration(&svg)
        ),
        Err(e) => format!(
            "<figure id=\"plot-{id}\"><p class=\"nodata\">{id}: {}</p></figure>",
            esc(&e)
        ),
    }
}
