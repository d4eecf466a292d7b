//! The API server: axum routes over the scheduler, served on a Unix socket. Every error is a JSON
//! object `{"error": "…"}` with a 4xx/5xx status; one bad request never affects another.

use crate::gpu::GpuDiscovery;
use crate::model::wire::{AskReply, DaemonStatus, ReportRequest, SubmitRequest, TellRequest};
use crate::scheduler::{Scheduler, SchedulerError, TellOutcome};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The scheduler.
    pub scheduler: Arc<Scheduler>,
    /// GPUs found at start.
    pub gpus: Arc<GpuDiscovery>,
    /// The state directory (for `status`).
    pub state_dir: PathBuf,
    /// Serve the read-only web page under `/ui` (daemon config `web = true`).
    pub web: bool,
}

/// An API error: status plus message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Largest request body accepted, except by `/v1/import`.
pub const BODY_LIMIT: usize = 2 << 20;

/// Largest body `/v1/import` accepts (an export of a long study with stderr tails is big).
pub const IMPORT_BODY_LIMIT: usize = 256 << 20;

/// Parses a JSON body with a message that names the field at fault. Public for the fuzz
/// target (`fuzz/fuzz_targets/api_request.rs`).
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(bad("the request body is empty; it must be a JSON object")),
        Some(b'{') => {}
        Some(_) => return Err(bad("the request body must be a JSON object ({…})")),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner
            .to_string()
            .replace("expected f64", "expected a number")
            .replace("expected u64", "expected a non-negative integer");
        if inner.is_syntax() || inner.is_eof() {
            bad(format!("the request body is not valid JSON: {msg}"))
        } else if path == "." {
            bad(format!("invalid request body: {msg}"))
        } else {
            bad(format!("invalid request body at {path}: {msg}"))
        }
    })
}

/// Turns the replies axum and hyper make on their own (405, 413, a path that is not UTF-8, a
/// body that broke off) into the API's `{"error": "…"}` shape, so every API error is JSON (the
/// web page's HTML error pages pass as they are).
async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // JSON already, or the web page's own HTML error pages (a browser shows those).
    let formed = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if formed {
        return resp;
    }
    let allow = resp.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let msg = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = allow
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .unwrap_or("")
                .to_string();
            format!("method {method} is not allowed on {path}; allowed: {allowed}")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = if path.ends_with("/import") {
                IMPORT_BODY_LIMIT
            } else {
                BODY_LIMIT
            };
            format!(
                "request body too large: {path} accepts at most {} MiB",
                limit >> 20
            )
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
        _ => text,
    };
    let mut out = ApiError(status, msg).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(crate::model::openapi::document()) }),
        )
        .route("/v1/studies", get(studies).post(submit))
        .route("/v1/studies/{name}", get(study).delete(delete_study))
        .route("/v1/studies/{name}/trials", get(trials))
        .route("/v1/studies/{name}/trials/{n}", get(trial))
        .route("/v1/studies/{name}/leaderboard", get(leaderboard))
        .route("/v1/studies/{name}/pause", post(pause))
        .route("/v1/studies/{name}/resume", post(resume))
        .route("/v1/studies/{name}/cancel", post(cancel))
        .route("/v1/studies/{name}/ask", post(ask))
        .route("/v1/studies/{name}/trials/{n}/report", post(report))
        .route("/v1/studies/{name}/trials/{n}/tell", post(tell))
        .route("/v1/studies/{name}/trials/{n}/logs", get(trial_logs))
        .route("/v1/studies/{name}/export", get(export))
        .route("/v1/backup", get(backup))
        .route(
            "/v1/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/v1/studies/{name}/import",
            post(import_results).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route("/v1/studies/{name}/enqueue", post(enqueue))
        .route("/v1/studies/{name}/extend", post(extend))
        .route("/v1/studies/{name}/tags", post(tag))
        .route("/v1/studies/{name}/note", post(study_note))
        .route("/v1/studies/{name}/trials/{n}/note", post(trial_note))
        .route("/v1/studies/{name}/copy", post(copy));
    let routes = if state.web {
        routes.merge(crate::daemon::web::routes())
    } else {
        routes
    };
    let api = routes
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such API endpoint; see docs/API.md".into(),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    // Outside the routes (a layer on them would run before axum adds the `Allow` header).
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(crate::daemon::access::audit))
}

/// The router for the TCP listener: the same API behind the bearer-token check.
pub fn tcp_router(state: AppState, token: Arc<crate::daemon::access::Token>) -> Router {
    router(state).layer(middleware::from_fn_with_state(
        token,
        crate::daemon::access::require_token,
    ))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "version": env!("CARGO_PKG_VERSION") }))
}

/// Prometheus exposition (also served on `metrics_listen`).
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::model::metrics::CONTENT_TYPE)],
        s.scheduler.render_metrics(),
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Json<DaemonStatus> {
    Json(DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        state_dir: s.state_dir.display().to_string(),
        slots: s.scheduler.slots(),
        gpus: (*s.gpus).clone(),
        gpu_usage: s.scheduler.gpu_states(),
        studies: s.scheduler.studies(),
    })
}

async fn studies(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.scheduler.studies())
}

async fn submit(State(s): State<AppState>, bytes: Bytes) -> ApiResult<Response> {
    let req: SubmitRequest = body(&bytes)?;
    let file = req.file.unwrap_or_else(|| "<submitted study>".into());
    let base = match req.base_dir {
        Some(d) if std::path::Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => {
            return Err(bad(format!(
                "base_dir must be an absolute path (got \"{d}\")"
            )))
        }
        None => s.state_dir.clone(),
    };
    let def = crate::model::study::parse(&req.source, &file, &base, None)
        .map_err(|e| bad(e.to_string()))?;
    // The program is looked up with the daemon's own PATH: that is where trials start.
    let remote = crate::model::preflight::check_program(&def, &req.source, &file)
        .map_err(|e| bad(e.to_string()))?;
    for w in remote
        .into_iter()
        .chain(crate::model::preflight::metric_warnings(&def))
    {
        tracing::warn!(study = %def.name, "{file}: {w}");
    }
    let summary = s.scheduler.submit(def, req.source).await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

async fn study(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.study(&name)?).into_response())
}

async fn trials(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.trials(&name)?).into_response())
}

async fn trial(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
) -> ApiResult<Response> {
    let n = trial_number(&n)?;
    let (view, reports) = s.scheduler.trial(&name, n)?;
    Ok(Json(serde_json::json!({ "trial": view, "reports": reports })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopQuery {
    top: Option<usize>,
}

async fn leaderboard(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Result<Query<TopQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| {
        let text = e.body_text();
        let text = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        bad(format!("invalid query: {text} (allowed: top=N)"))
    })?;
    Ok(Json(s.scheduler.leaderboard(&name, q.top)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    attempt: Option<u32>,
    #[serde(default)]
    stream: crate::model::wire::LogStream,
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

/// A piece of a trial attempt's stdout or stderr (`quantune logs`), read off the async workers
/// (the file may be on a slow shared file system).
async fn trial_logs(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let n = trial_number(&n)?;
    let Query(q) = q.map_err(|e| {
        let text = e.body_text();
        let text = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        bad(format!(
            "invalid query: {text} (allowed: attempt=K, stream=stdout|stderr, offset=BYTES, limit=BYTES)"
        ))
    })?;
    let (path, attempt, running) = s.scheduler.log_file(&name, n, q.attempt, q.stream)?;
    let limit = q.limit.unwrap_or(crate::daemon::logs::DEFAULT_PIECE);
    let piece = tokio::task::spawn_blocking(move || {
        crate::daemon::logs::read_piece(&path, q.offset, limit)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(crate::model::wire::TrialLog {
        trial: n,
        attempt,
        stream: q.stream,
        offset: piece.offset,
        next_offset: piece.next_offset,
        size: piece.size,
        text: piece.text,
        running,
        exists: piece.exists,
    })
    .into_response())
}

async fn pause(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.pause(&name).await?).into_response())
}

async fn resume(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.resume(&name).await?).into_response())
}

async fn cancel(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.cancel(&name).await?).into_response())
}

async fn ask(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let (trial, params) = s.scheduler.ask(&name).await?;
    Ok(Json(AskReply { trial, params }).into_response())
}

/// Parses a trial number from a path segment (public for the fuzz target).
pub fn trial_number(n: &str) -> ApiResult<u64> {
    n.parse().map_err(|_| {
        bad(format!(
            "trial number must be a non-negative integer (got \"{n}\")"
        ))
    })
}

async fn report(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let n = trial_number(&n)?;
    let req: ReportRequest = body(&bytes)?;
    let prune = s.scheduler.report(&name, n, req.step, req.metrics).await?;
    Ok(Json(serde_json::json!({ "prune": prune })).into_response())
}

async fn tell(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let n = trial_number(&n)?;
    let req: TellRequest = body(&bytes)?;
    let outcome = match (req.metrics, req.failed, req.infeasible) {
        (Some(m), None, None) => TellOutcome::Complete(m),
        (None, Some(r), None) if r.trim().is_empty() => {
            return Err(bad(
                "\"failed\" needs a reason: say what went wrong, e.g. {\"failed\": \"CUDA out of memory\"}",
            ))
        }
        (None, None, Some(r)) if r.trim().is_empty() => {
            return Err(bad(
                "\"infeasible\" needs a reason: say why the configuration cannot run, e.g. {\"infeasible\": \"needs 80 GB\"}",
            ))
        }
        (None, Some(r), None) => TellOutcome::Failed(r),
        (None, None, Some(r)) => TellOutcome::Infeasible(r),
        _ => {
            return Err(bad(
                "tell needs exactly one of \"metrics\", \"failed\" or \"infeasible\"",
            ))
        }
    };
    Ok(Json(s.scheduler.tell(&name, n, outcome).await?).into_response())
}

async fn export(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let data = s.scheduler.export(&name)?;
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], data).into_response())
}

/// Every study as JSON lines, from one consistent moment (`quantune backup`).
async fn backup(State(s): State<AppState>) -> ApiResult<Response> {
    let data = s.scheduler.backup().await?;
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], data).into_response())
}

/// The query of `POST /v1/import`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// Import the file's one study under this name.
    #[serde(rename = "as")]
    to: Option<String>,
}

async fn import(
    State(s): State<AppState>,
    q: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| {
        bad(format!(
            "invalid query: {} (allowed: as=NAME)",
            e.body_text()
        ))
    })?;
    let summary = s.scheduler.import_as(bytes.to_vec(), q.to).await?;
    Ok(
        Json(serde_json::json!({ "studies": summary.studies, "trials": summary.trials }))
            .into_response(),
    )
}

async fn import_results(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: crate::model::results::ImportRequest = body(&bytes)?;
    drop(bytes);
    let trials = s.scheduler.import_results(&name, req.results).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::new(ImportedBody { trials, next: 0 }),
    )
        .into_response())
}

/// Trial views written per piece of an import's reply.
const VIEWS_PER_PIECE: usize = 1000;

/// The reply to an import, a JSON array of its trials, written a piece at a time from the
/// snapshot (100,000 views at once would cost hundreds of megabytes).
struct ImportedBody {
    trials: crate::scheduler::ImportedTrials,
    /// The next trial to write; past the end once `]` is written.
    next: usize,
}

impl hyper::body::Body for ImportedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let len = this.trials.len();
        if this.next > len {
            return std::task::Poll::Ready(None);
        }
        let mut out = Vec::new();
        if this.next == 0 {
            out.push(b'[');
        }
        let end = (this.next + VIEWS_PER_PIECE).min(len);
        for (i, v) in this.trials.views(this.next..end).enumerate() {
            if this.next + i > 0 {
                out.push(b',');
            }
            if let Err(e) = serde_json::to_writer(&mut out, &v) {
                tracing::error!("cannot write trial {} of an import's reply: {e}", v.trial);
                out.extend_from_slice(b"null");
            }
        }
        this.next = end;
        if end == len {
            out.push(b']');
            this.next = len + 1;
        }
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(out)))))
    }
}

/// Body of `POST …/enqueue`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueRequest {
    /// The configuration (missing parameters are filled by the strategy).
    params: quantune_strategies::Params,
}

async fn enqueue(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: EnqueueRequest = body(&bytes)?;
    let trial = s.scheduler.enqueue(&name, req.params).await?;
    Ok((StatusCode::CREATED, Json(trial)).into_response())
}

async fn delete_study(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(s.scheduler.delete(&name).await?).into_response())
}

async fn extend(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: crate::model::wire::ExtendRequest = body(&bytes)?;
    Ok(Json(s.scheduler.extend(&name, req).await?).into_response())
}

async fn tag(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: crate::model::wire::TagRequest = body(&bytes)?;
    Ok(Json(s.scheduler.tag(&name, req).await?).into_response())
}

async fn study_note(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: crate::model::wire::NoteRequest = body(&bytes)?;
    Ok(Json(s.scheduler.study_note(&name, req.note).await?).into_response())
}

async fn trial_note(
    State(s): State<AppState>,
    Path((name, n)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let n = trial_number(&n)?;
    let req: crate::model::wire::NoteRequest = body(&bytes)?;
    Ok(Json(s.scheduler.trial_note(&name, n, req.note).await?).into_response())
}

async fn copy(
    State(s): State<AppState>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let req: crate::model::wire::CopyRequest = body(&bytes)?;
    s.scheduler.copy(&name, &req.to).await?;
    let copy = s.scheduler.study(&req.to)?;
    Ok((StatusCode::CREATED, Json(copy)).into_response())
}
