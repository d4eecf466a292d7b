//! The Ray executor: each attempt is one Ray job, submitted through the Jobs REST API that a Ray
//! cluster's dashboard serves (`POST /api/jobs/`). The submission id is chosen by quantune and
//! written to the shared directory before the job is submitted, so a restarted daemon always
//! knows which job to look for. One poller lists the cluster's jobs in a single
//! `GET /api/jobs/` per interval, follows the metrics files in the shared directory for
//! intermediate reports, stops the jobs quantune wants stopped (cancel, prune, timeout), and
//! collects finished jobs from the exit marker their entrypoint writes — or, when the job died
//! before writing it, from Ray's status and error type — with the job's log as the stderr tail.
//!
//! Jobs outlive the daemon: after a restart (or `kill -9`) the scheduler re-attaches to its
//! running trials by submission id ([`Executor::attach`]). A job that finished meanwhile is
//! collected, one still pending or running is followed on, and one Ray has never heard of (the
//! daemon died between recording the id and submitting) is submitted then, under the same id.
//! Metrics travel through the shared directory, as for Slurm (docs/RAY.md says why).

use super::metrics_tail::MetricsTail;
use super::protocol::{self, Exit};
use super::slurm::REQUEUE_PREFIX;
use super::{AttemptOutcome, CancelReason, ExecEvent, Executor, Launch};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// `[executor.ray]` in the daemon config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RayConfig {
    /// The Jobs API: the dashboard's HTTP address (`http://HOST:PORT`, optionally with a path
    /// prefix when it sits behind a proxy).
    #[serde(default = "default_address")]
    pub address: String,
    /// A file holding a bearer token (`Authorization: Bearer <token>`), e.g. the one
    /// `ray get-auth-token` prints for a cluster with token authentication.
    pub token_file: Option<PathBuf>,
    /// A file of extra request headers, one `Name: value` per line (`#` starts a comment).
    pub headers_file: Option<PathBuf>,
    /// Where metrics files and exit markers live; the same directory on every Ray node.
    pub shared_dir: PathBuf,
    /// CPUs reserved for each trial's entrypoint (`entrypoint_num_cpus`; default 1).
    #[serde(default = "one_cpu")]
    pub num_cpus: f64,
    /// Memory reserved for each trial's entrypoint (`entrypoint_memory`), e.g. "16GiB".
    pub memory: Option<String>,
    /// Custom Ray resources reserved for each trial (`entrypoint_resources`).
    #[serde(default)]
    pub resources: BTreeMap<String, f64>,
    /// A Ray `runtime_env` for every trial (`pip`, `conda`, `working_dir` URI, …); the trial's
    /// environment is added to its `env_vars`.
    pub runtime_env: Option<toml::Table>,
    /// How often jobs are polled (e.g. "5s"; default 2s).
    pub poll_interval: Option<String>,
    /// Delete each job from Ray once its outcome and log tail are collected (default false:
    /// Ray keeps every job, and each poll lists them all).
    #[serde(default)]
    pub delete_finished: bool,
}

fn default_address() -> String {
    "http://127.0.0.1:8265".into()
}

fn one_cpu() -> f64 {
    1.0
}

/// How long a job may be missing from Ray's list (or finished without a visible exit marker)
/// before it is given up: a shared file system may show a file late.
const GRACE: Duration = Duration::from_secs(30);

/// How long a submission may keep failing for lack of an answer before the attempt fails.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(600);

/// How long one request to the Jobs API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the Jobs API is and what every request carries.
#[derive(Clone, Debug)]
struct Api {
    /// `host:port` to connect to.
    authority: String,
    /// Path before `/api/…`: empty, or a proxy's prefix such as `/ray`.
    prefix: String,
    /// Headers sent with every request (authorization).
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

/// A request that got no usable answer.
#[derive(Debug, PartialEq)]
enum ApiError {
    /// No connection, no answer in time, or a broken reply: worth trying again.
    Unreachable(String),
    /// Ray answered with this status and text.
    Status(u16, String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Unreachable(m) => f.write_str(m),
            ApiError::Status(code, text) => write!(f, "HTTP {code}: {}", first_line(text, 300)),
        }
    }
}

/// The first non-empty line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(max).collect()
}

/// Splits `http://HOST:PORT[/prefix]` into the authority and the prefix.
fn parse_address(address: &str) -> Result<(String, String), String> {
    let bad = || {
        format!(
            "executor.ray.address must look like http://HOST:PORT, the Ray dashboard's address (got \"{address}\")"
        )
    };
    if address.starts_with("https://") {
        return Err(format!(
            "executor.ray.address \"{address}\": https is not supported; reach the dashboard over http (a port-forward, or an HTTP proxy in front of a TLS endpoint)"
        ));
    }
    let rest = address.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return Err(bad());
    }
    let authority = if authority.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
    }) {
        authority.to_string()
    } else if !authority.contains(':') || authority.ends_with(']') {
        format!("{authority}:80")
    } else {
        return Err(bad());
    };
    Ok((authority, prefix.to_string()))
}

/// Reads a secret file of `[executor.ray]` (see [`crate::secret::read`]).
fn read_secret(field: &str, path: &Path) -> Result<String, String> {
    crate::secret::read(&format!("executor.ray.{field}"), path)
}

/// Parses a headers file: `Name: value` per line; blank lines and `#` comments are skipped.
fn parse_headers(
    path: &Path,
    text: &str,
) -> Result<Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("executor.ray.headers_file {}:{}", path.display(), i + 1);
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!("{at}: expected \"Name: value\" (e.g. \"Authorization: Bearer TOKEN\")")
        })?;
        let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{at}: \"{}\" is not a header name", name.trim()))?;
        let value = hyper::header::HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("{at}: the value of {name} has characters a header cannot carry")
        })?;
        out.push((name, value));
    }
    Ok(out)
}

impl Api {
    /// The API described by `cfg`, with its secrets read.
    fn from_config(cfg: &RayConfig) -> Result<Api, String> {
        let (authority, prefix) = parse_address(&cfg.address)?;
        let mut headers = Vec::new();
        if let Some(path) = &cfg.token_file {
            let token = read_secret("token_file", path)?;
            let token = token.trim();
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "executor.ray.token_file {} must hold one token without spaces",
                    path.display()
                ));
            }
            let value =
                hyper::header::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    format!(
                        "executor.ray.token_file {} holds characters a header cannot carry",
                        path.display()
                    )
                })?;
            headers.push((hyper::header::AUTHORIZATION, value));
        }
        if let Some(path) = &cfg.headers_file {
            headers.extend(parse_headers(path, &read_secret("headers_file", path)?)?);
        }
        Ok(Api {
            authority,
            prefix,
            headers,
        })
    }

    /// One request; the reply's status and body, whatever the status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let target = format!("http://{}{}{path}", self.authority, self.prefix);
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::Unreachable(format!("Ray Jobs API at {target}: {what}: {e}"))
        };
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| unreachable("cannot connect", &e))?;
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable("no HTTP", &e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let mut req = Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.prefix))
                .header(hyper::header::HOST, &self.authority);
            for (k, v) in &self.headers {
                req = req.header(k, v);
            }
            let bytes = match body {
                Some(b) => {
                    req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                    serde_json::to_vec(b).unwrap_or_default()
                }
                None => Vec::new(),
            };
            let req = req
                .body(Full::new(Bytes::from(bytes)))
                .map_err(|e| unreachable("bad request", &e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable("no answer", &e))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable("the reply broke off", &e))?
                .to_bytes()
                .to_vec();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::Unreachable(format!(
                    "Ray Jobs API at {target}: no answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            })
    }

    /// A request whose 2xx reply is JSON.
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let (status, bytes) = self.send(method, path, body).await?;
        let text = String::from_utf8_lossy(&bytes);
        if !(200..300).contains(&status) {
            return Err(ApiError::Status(status, text.into_owned()));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::Unreachable(format!(
                "Ray Jobs API: reply to {path} is not JSON ({e}): {}",
                first_line(&text, 200)
            ))
        })
    }

    /// Every job the cluster knows, by submission id.
    async fn list(&self) -> Result<HashMap<String, RayJob>, ApiError> {
        let v = self.json(Method::GET, "/api/jobs/", None).await?;
        let Value::Array(items) = v else {
            return Err(ApiError::Unreachable(
                "Ray Jobs API: GET /api/jobs/ did not return a list".into(),
            ));
        };
        Ok(items
            .iter()
            .filter_map(RayJob::from_json)
            .map(|j| (j.submission_id.clone(), j))
            .collect())
    }

    /// The last `n` bytes of a job's log (its entrypoint's stdout and stderr).
    async fn log_tail(&self, id: &str, n: usize) -> Option<String> {
        let v = self
            .json(Method::GET, &format!("/api/jobs/{id}/logs"), None)
            .await
            .ok()?;
        let logs = v.get("logs")?.as_str()?;
        let mut start = logs.len().saturating_sub(n);
        while !logs.is_char_boundary(start) {
            start += 1;
        }
        let s = &logs[start..];
        (!s.trim().is_empty()).then(|| s.to_string())
    }
}

/// What Ray says about one job.
#[derive(Clone, Debug, PartialEq)]
struct RayJob {
    /// The submission id quantune chose.
    submission_id: String,
    /// PENDING, RUNNING, STOPPED, SUCCEEDED or FAILED.
    status: String,
    /// Ray's words on the status.
    message: String,
    /// Why it failed, in Ray's terms (`JOB_ENTRYPOINT_COMMAND_ERROR`, …).
    error_type: Option<String>,
    /// The entrypoint's exit status, once it exited (negative: killed by that signal).
    driver_exit_code: Option<i64>,
}

impl RayJob {
    fn from_json(v: &Value) -> Option<RayJob> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(RayJob {
            submission_id: s("submission_id")?,
            status: s("status")?,
            message: s("message").unwrap_or_default(),
            error_type: s("error_type"),
            driver_exit_code: v.get("driver_exit_code").and_then(Value::as_i64),
        })
    }

    fn terminal(&self) -> bool {
        matches!(self.status.as_str(), "STOPPED" | "SUCCEEDED" | "FAILED")
    }
}

/// Whether Ray already has the job, as far as this process knows.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Not submitted yet, or re-attached and not yet seen in Ray's list: the next poll looks
    /// for it and submits it if Ray does not have it.
    Unknown,
    /// Ray has it.
    Submitted,
}

/// One job in flight.
struct Job {
    /// What was launched (its run_dir pointed at the shared directory).
    launch: Launch,
    /// The Ray submission id.
    id: String,
    /// Whether Ray has it.
    phase: Phase,
    /// When submitting it first failed for want of an answer.
    submit_failing_since: Option<Instant>,
    /// Since when Ray's job list has gone unanswered.
    unreachable_since: Option<Instant>,
    /// Why the scheduler wants it stopped, once it does.
    cancel: Option<CancelReason>,
    /// Whether the stop request went through.
    stop_sent: bool,
    /// Whether quantune stopped it for running past `trial.timeout`.
    timed_out: bool,
    /// When its entrypoint started (Unix seconds), once it runs.
    running_since: Option<f64>,
    /// Follows its metrics file.
    tail: MetricsTail,
    /// When it was first seen missing (from Ray's list, or its exit marker after success).
    missing_since: Option<Instant>,
    /// Last status seen.
    state: String,
}

/// The attempt's files in the shared directory.
struct Files {
    /// `QUANTUNE_METRICS_FILE`.
    metrics: PathBuf,
    /// The exit status, written by the entrypoint as it ends.
    exit: PathBuf,
    /// The Unix time the entrypoint started, written by it.
    start: PathBuf,
    /// The submission id, written before the job is submitted.
    submission: PathBuf,
    /// Written when quantune cancels the job while Ray still has it pending: the entrypoint
    /// exits at once if Ray starts it anyway.
    cancel: PathBuf,
}

fn files(l: &Launch) -> Files {
    let (a, dir) = (l.attempt, &l.run_dir);
    Files {
        metrics: dir.join(format!("metrics.{a}.jsonl")),
        exit: dir.join(format!("exit.{a}")),
        start: dir.join(format!("start.{a}")),
        submission: dir.join(format!("ray-submission.{a}")),
        cancel: dir.join(format!("cancel.{a}")),
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The job's entrypoint, a `/bin/sh` command line with every value single-quoted: it exits at
/// once when quantune cancelled it while it was pending, records when it started, `cd`s to `trial.working_dir` (unless the runtime_env brings a working_dir
/// of its own), runs the trial's command and records its exit status (atomically) before it
/// exits with it.
fn entrypoint(l: &Launch, f: &Files, cd: bool) -> Result<String, String> {
    let mut argv = Vec::new();
    for arg in &l.spec.command {
        argv.push(quote(&protocol::substitute(
            arg, &l.params, &l.study, l.trial,
        )?));
    }
    let mut s = format!(
        "[ ! -e {} ] || {{ echo 'quantune: cancelled before it started' >&2; exit 143; }}; date +%s > {}; ",
        quote(&f.cancel.display().to_string()),
        quote(&f.start.display().to_string())
    );
    if cd {
        let wd = l.spec.working_dir.display().to_string();
        s.push_str(&format!(
            "cd {} || {{ echo {} >&2; exit 97; }}; ",
            quote(&wd),
            quote(&format!(
                "quantune: trial.working_dir {wd} does not exist on this Ray node"
            ))
        ));
    }
    s.push_str(&argv.join(" "));
    let marker = quote(&f.exit.display().to_string());
    let tmp = quote(&format!("{}.tmp", f.exit.display()));
    s.push_str(&format!(
        "; code=$?; echo \"$code\" > {tmp} && mv {tmp} {marker}; exit \"$code\""
    ));
    Ok(s)
}

/// The `POST /api/jobs/` body for one attempt.
fn submission(cfg: &RayConfig, l: &Launch, id: &str, f: &Files) -> Result<Value, String> {
    let mut runtime_env = match &cfg.runtime_env {
        Some(t) => serde_json::to_value(t).map_err(|e| format!("executor.ray.runtime_env: {e}"))?,
        None => json!({}),
    };
    let cd = runtime_env.get("working_dir").is_none();
    let mut env_vars = serde_json::Map::new();
    if let Some(Value::Object(given)) = runtime_env.get("env_vars") {
        env_vars.extend(given.clone());
    }
    for (k, v) in &l.spec.env {
        env_vars.insert(k.clone(), json!(v));
    }
    for (k, v) in [
        ("QUANTUNE_STUDY", l.study.clone()),
        ("QUANTUNE_TRIAL", l.trial.to_string()),
        ("QUANTUNE_ATTEMPT", l.attempt.to_string()),
        ("QUANTUNE_PARAMS", protocol::params_json(&l.params)),
        ("QUANTUNE_METRICS_FILE", f.metrics.display().to_string()),
    ] {
        env_vars.insert(k.into(), json!(v));
    }
    runtime_env["env_vars"] = Value::Object(env_vars);
    let mut body = json!({
        "entrypoint": entrypoint(l, f, cd)?,
        "submission_id": id,
        "runtime_env": runtime_env,
        "metadata": {
            "quantune_study": l.study,
            "quantune_trial": l.trial.to_string(),
            "quantune_attempt": l.attempt.to_string(),
        },
        "entrypoint_num_cpus": cfg.num_cpus,
    });
    if l.spec.gpus > 0 {
        body["entrypoint_num_gpus"] = json!(l.spec.gpus);
    }
    if let Some(m) = &cfg.memory {
        body["entrypoint_memory"] =
            json!(crate::model::study::parse_bytes(m)
                .map_err(|e| format!("executor.ray.memory: {e}"))?);
    }
    if !cfg.resources.is_empty() {
        body["entrypoint_resources"] = json!(cfg.resources);
    }
    Ok(body)
}

/// Everything known about a job that has ended, to decide its outcome.
struct End<'a> {
    /// The submission id.
    id: &'a str,
    /// What Ray says (absent when Ray no longer knows the job).
    ray: Option<&'a RayJob>,
    /// The exit marker's status, if the entrypoint wrote one.
    marker: Option<i32>,
    /// Why quantune asked for it to stop.
    why: Option<CancelReason>,
    /// Whether quantune stopped it for its timeout.
    timed_out: bool,
    /// `trial.timeout`.
    timeout_secs: f64,
    /// The metrics file.
    metrics: &'a str,
    /// The job log's tail.
    stderr_tail: Option<String>,
}

/// How an ended job maps to quantune's outcomes (docs/RAY.md, "Failure kinds"): the exit
/// marker when the entrypoint wrote one, else Ray's status and error type. Ray's own failures
/// (the node or supervisor lost, the job stopped by someone else, never started in time) are
/// re-run without costing a retry.
fn outcome(e: End) -> AttemptOutcome {
    let id = e.id;
    let cancelled = e.why.filter(|w| *w != CancelReason::Shutdown);
    let timeout = || AttemptOutcome::Failed {
        reason: format!(
            "timeout after {} (Ray job {id} stopped)",
            crate::model::duration::format_secs(e.timeout_secs)
        ),
        stderr_tail: e.stderr_tail.clone(),
    };
    if let Some(code) = e.marker {
        if code != 0 && e.timed_out {
            return timeout();
        }
        if let (true, Some(why)) = (code != 0, cancelled) {
            return AttemptOutcome::Cancelled {
                why,
                stderr_tail: e.stderr_tail,
            };
        }
        return protocol::outcome(Exit::Code(code), e.metrics, e.stderr_tail);
    }
    let Some(ray) = e.ray else {
        return AttemptOutcome::Failed {
            reason: format!(
                "{REQUEUE_PREFIX}Ray job {id} vanished (not in Ray's job list, no exit marker)"
            ),
            stderr_tail: e.stderr_tail,
        };
    };
    if ray.status != "SUCCEEDED" {
        if e.timed_out {
            return timeout();
        }
        if let Some(why) = cancelled {
            return AttemptOutcome::Cancelled {
                why,
                stderr_tail: e.stderr_tail,
            };
        }
    }
    let said = first_line(&ray.message, 300);
    match (ray.status.as_str(), ray.error_type.as_deref()) {
        ("SUCCEEDED", _) => AttemptOutcome::Failed {
            reason: format!(
                "Ray job {id} succeeded but its exit marker is missing: is executor.ray.shared_dir the same directory on the Ray nodes?"
            ),
            stderr_tail: e.stderr_tail,
        },
        ("STOPPED", _) => AttemptOutcome::Failed {
            reason: format!("{REQUEUE_PREFIX}Ray job {id} was stopped outside quantune"),
            stderr_tail: e.stderr_tail,
        },
        (_, Some("JOB_ENTRYPOINT_COMMAND_ERROR")) => {
            let exit = match ray.driver_exit_code {
                Some(c) if c < 0 => Exit::Signal(c.unsigned_abs().min(i32::MAX as u64) as i32),
                Some(c) => Exit::Code(c as i32),
                None => Exit::Code(-1),
            };
            protocol::outcome(exit, e.metrics, e.stderr_tail)
        }
        (_, Some(kind @ ("JOB_SUPERVISOR_ACTOR_DIED" | "JOB_SUPERVISOR_ACTOR_START_TIMEOUT"))) => {
            AttemptOutcome::Failed {
                reason: format!("{REQUEUE_PREFIX}Ray job {id} ended {kind}: {said}"),
                stderr_tail: e.stderr_tail,
            }
        }
        (status, kind) => AttemptOutcome::Failed {
            reason: format!(
                "Ray job {id} {status} ({}): {said}",
                kind.unwrap_or("no error type")
            ),
            stderr_tail: e.stderr_tail,
        },
    }
}

/// Checks what Ray would refuse only at submission, naming the key.
fn check_runtime_env(env: &toml::Table) -> Result<(), String> {
    match env.get("env_vars") {
        None => {}
        Some(toml::Value::Table(vars)) => {
            if let Some((k, _)) = vars.iter().find(|(_, v)| !v.is_str()) {
                return Err(format!(
                    "executor.ray.runtime_env.env_vars.{k} must be a string (quote it)"
                ));
            }
        }
        Some(_) => {
            return Err("executor.ray.runtime_env.env_vars must be a table of strings".into())
        }
    }
    if let Some(wd) = env.get("working_dir") {
        if !wd.as_str().is_some_and(|s| s.contains("://")) {
            return Err(format!(
                "executor.ray.runtime_env.working_dir = {wd}: the Jobs API takes a URI (s3://…, gs://…, https://….zip), not a local directory; or leave it out and put the code at trial.working_dir on every node"
            ));
        }
    }
    Ok(())
}

/// How long after a job is collected it is deleted from Ray: its supervisor exits a moment
/// after the job ends, and Ray's monitor, finding the job's record gone by then, would write a
/// "supervisor died" record back under the same id.
const DELETE_DELAY: Duration = Duration::from_secs(10);

/// A finished job to delete from Ray.
struct Deletion {
    /// Its submission id.
    id: String,
    /// When to (try to) delete it.
    due: Instant,
    /// Deletions sent so far (a record Ray wrote back after one is deleted again, a few times).
    tries: u32,
}

/// Deletes the jobs whose time has come, and again any that Ray wrote back meanwhile.
async fn delete_due(sh: &Arc<Shared>, listed: &HashMap<String, RayJob>) {
    let due: Vec<String> = {
        let mut d = sh.deletions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        d.retain(|x| {
            x.due > now || (listed.get(&x.id).is_some_and(RayJob::terminal) && x.tries < 3)
        });
        d.iter_mut()
            .filter(|x| x.due <= now)
            .map(|x| {
                x.tries += 1;
                x.due = now + 2 * DELETE_DELAY;
                x.id.clone()
            })
            .collect()
    };
    for id in due {
        if let Err(e) = sh
            .api
            .json(Method::DELETE, &format!("/api/jobs/{id}"), None)
            .await
        {
            tracing::warn!(job = %id, "ray: cannot delete the finished job: {e}");
        }
    }
}

/// What the executor and its poller share.
struct Shared {
    /// Settings.
    cfg: RayConfig,
    /// The Jobs API.
    api: Api,
    /// Where events go.
    events: mpsc::UnboundedSender<ExecEvent>,
    /// Jobs in flight by (study, trial).
    jobs: Mutex<HashMap<(String, u64), Job>>,
    /// Finished jobs to delete from Ray (`delete_finished`).
    deletions: Mutex<Vec<Deletion>>,
    /// Wakes the poller early (a job to submit or stop).
    wake: Notify,
}

/// Runs attempts as Ray jobs.
pub struct RayExecutor {
    /// State shared with the poller task.
    shared: Arc<Shared>,
}

impl RayExecutor {
    /// An executor sending events to `events`; starts its poller among `tasks` (call inside a
    /// tokio runtime).
    /// Bad settings (address, secrets, sizes, the shared directory) are errors naming the field.
    pub fn new(
        cfg: RayConfig,
        events: mpsc::UnboundedSender<ExecEvent>,
        tasks: &crate::tasks::Tasks,
    ) -> Result<RayExecutor, String> {
        let interval = match &cfg.poll_interval {
            Some(s) => crate::model::duration::parse_duration(s)
                .map_err(|e| format!("executor.ray.poll_interval: {e}"))?,
            None => 2.0,
        };
        if !(cfg.num_cpus.is_finite() && cfg.num_cpus >= 0.0) {
            return Err(format!(
                "executor.ray.num_cpus must be a number of CPUs, 0 or more (got {})",
                cfg.num_cpus
            ));
        }
        if let Some(m) = &cfg.memory {
            crate::model::study::parse_bytes(m).map_err(|e| format!("executor.ray.memory: {e}"))?;
        }
        if let Some((k, v)) = cfg
            .resources
            .iter()
            .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
        {
            return Err(format!(
                "executor.ray.resources.{k} must be 0 or more (got {v})"
            ));
        }
        if let Some(env) = &cfg.runtime_env {
            check_runtime_env(env)?;
        }
        let api = Api::from_config(&cfg)?;
        std::fs::create_dir_all(&cfg.shared_dir)
            .map_err(|e| format!("executor.ray.shared_dir {}: {e}", cfg.shared_dir.display()))?;
        let shared = Arc::new(Shared {
            cfg,
            api,
            events,
            jobs: Mutex::default(),
            deletions: Mutex::default(),
            wake: Notify::new(),
        });
        let poller = shared.clone();
        tasks.spawn_until_stopped("ray poller", async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
                    _ = poller.wake.notified() => {}
                }
                poll(&poller).await;
            }
        });
        Ok(RayExecutor { shared })
    }

    /// The attempt's files live in the shared directory, where the Ray nodes see them.
    fn in_shared_dir(&self, mut launch: Launch) -> Launch {
        launch.run_dir = self
            .shared
            .cfg
            .shared_dir
            .join(&launch.study)
            .join(launch.trial.to_string());
        launch
    }

    fn track(&self, launch: Launch, id: String) {
        let key = (launch.study.clone(), launch.trial);
        let job = Job {
            tail: MetricsTail::new(files(&launch).metrics),
            launch,
            id,
            phase: Phase::Unknown,
            submit_failing_since: None,
            unreachable_since: None,
            cancel: None,
            stop_sent: false,
            timed_out: false,
            running_since: None,
            missing_since: None,
            state: String::new(),
        };
        self.shared.lock().insert(key, job);
        self.shared.wake.notify_one();
    }

    fn fail(&self, l: &Launch, reason: String) {
        let _ = self.shared.events.send(ExecEvent::Finished {
            study: l.study.clone(),
            trial: l.trial,
            attempt: l.attempt,
            outcome: AttemptOutcome::Failed {
                reason,
                stderr_tail: None,
            },
        });
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_state(&self, l: &Launch, state: &str) {
        let _ = self.events.send(ExecEvent::JobState {
            study: l.study.clone(),
            trial: l.trial,
            attempt: l.attempt,
            state: state.to_string(),
        });
    }
}

impl Executor for RayExecutor {
    fn name(&self) -> &'static str {
        "ray"
    }

    /// Ray keeps a job's output in its own logs (`ray job logs`), not in files here.
    fn logs_dir(&self, _study: &str, _trial: u64, _run_dir: PathBuf) -> Option<PathBuf> {
        None
    }

    fn start(&self, launch: Launch) {
        let launch = self.in_shared_dir(launch);
        let f = files(&launch);
        // Checked now, so a bad template fails at once instead of at submission.
        if let Err(e) = submission(&self.shared.cfg, &launch, "check", &f) {
            return self.fail(&launch, format!("bad command template: {e}"));
        }
        let id = format!(
            "quantune-{}-{}-{}-{:08x}",
            launch.study,
            launch.trial,
            launch.attempt,
            rand::random::<u32>()
        );
        // Durable before Ray hears of it: a restarted daemon finds the job by this id. Files
        // an earlier study of the same name left are cleared first: a stale exit marker would
        // pass for this attempt's.
        let written = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&launch.run_dir)?;
            for stale in [&f.exit, &f.start, &f.cancel] {
                match std::fs::remove_file(stale) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::write(&f.metrics, b"")?;
            let tmp = f.submission.with_extension("tmp");
            std::fs::write(&tmp, &id)?;
            std::fs::rename(&tmp, &f.submission)
        })();
        if let Err(e) = written {
            return self.fail(
                &launch,
                format!(
                    "cannot write the job files in {}: {e}",
                    self.shared.cfg.shared_dir.display()
                ),
            );
        }
        let _ = self.shared.events.send(ExecEvent::Started {
            study: launch.study.clone(),
            trial: launch.trial,
            attempt: launch.attempt,
            job_id: id.clone(),
        });
        self.track(launch, id);
    }

    fn survives_restart(&self) -> bool {
        true
    }

    fn attach(&self, launch: Launch, job_id: Option<String>) {
        let launch = self.in_shared_dir(launch);
        let f = files(&launch);
        let id = job_id.or_else(|| {
            let id = std::fs::read_to_string(&f.submission).ok()?;
            let id = id.trim().to_string();
            let _ = self.shared.events.send(ExecEvent::Started {
                study: launch.study.clone(),
                trial: launch.trial,
                attempt: launch.attempt,
                job_id: id.clone(),
            });
            Some(id)
        });
        match id {
            Some(id) => self.track(launch, id),
            // The previous process stopped before it chose an id: nothing was submitted.
            None => self.fail(
                &launch,
                format!("{REQUEUE_PREFIX}the daemon stopped before submitting the Ray job"),
            ),
        }
    }

    fn cancel(&self, study: &str, trial: u64, why: CancelReason) {
        if why == CancelReason::Shutdown {
            // Jobs keep running under Ray while the daemon is away.
            return;
        }
        if let Some(job) = self.shared.lock().get_mut(&(study.to_string(), trial)) {
            job.cancel = Some(why);
        }
        self.shared.wake.notify_one();
    }

    fn in_flight(&self) -> usize {
        self.shared.lock().len()
    }
}

/// A job as one polling round sees it (copied out of [`Job`], so no lock is held across I/O).
struct Snapshot {
    /// (study, trial).
    key: (String, u64),
    /// The submission id.
    id: String,
    /// Whether Ray has it.
    phase: Phase,
    /// Why the scheduler wants it stopped.
    cancel: Option<CancelReason>,
    /// Whether the stop request went through.
    stop_sent: bool,
    /// Whether it was stopped for its timeout.
    timed_out: bool,
    /// When its entrypoint started (Unix seconds).
    running_since: Option<f64>,
    /// What was launched.
    launch: Launch,
}

/// What a polling round does about one job once it has looked.
enum Action {
    /// Nothing yet.
    Wait,
    /// Submit it (Ray does not have it).
    Submit,
    /// Ask Ray to stop it; `timeout` when for running past `trial.timeout`.
    Stop { timeout: bool },
    /// It ended: collect it.
    Collect(Option<RayJob>),
    /// Stopped before Ray ever had it.
    CancelUnsubmitted(CancelReason),
    /// Stopped while Ray had it pending: asked to stop, and ended now.
    StopPending(CancelReason),
    /// Given up, for this reason.
    Fail(String),
}

/// One polling round over every job in flight.
async fn poll(sh: &Arc<Shared>) {
    let snapshot: Vec<Snapshot> = sh
        .lock()
        .iter()
        .map(|(k, j)| Snapshot {
            key: k.clone(),
            id: j.id.clone(),
            phase: j.phase,
            cancel: j.cancel,
            stop_sent: j.stop_sent,
            timed_out: j.timed_out,
            running_since: j.running_since,
            launch: j.launch.clone(),
        })
        .collect();
    let deleting = !sh
        .deletions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty();
    if snapshot.is_empty() && !deleting {
        return;
    }
    // Reports first, so a pruner sees them before the outcome.
    for s in &snapshot {
        let taken = sh
            .lock()
            .get_mut(&s.key)
            .map(|j| std::mem::replace(&mut j.tail, MetricsTail::new(files(&s.launch).metrics)));
        if let Some(mut tail) = taken {
            // A limit broken is reported with the outcome (the final read refuses it).
            let _ = tail.poll(&s.launch, &sh.events).await;
            if let Some(j) = sh.lock().get_mut(&s.key) {
                j.tail = tail;
            }
        }
    }
    // One list call for every job; without an answer nothing is decided this round.
    let listed = match sh.api.list().await {
        Ok(l) => l,
        Err(e) => return unreachable(sh, &snapshot, &e).await,
    };
    for j in sh.lock().values_mut() {
        j.unreachable_since = None;
    }
    delete_due(sh, &listed).await;
    let t = now();
    let mut actions = Vec::new();
    for s in &snapshot {
        let f = files(&s.launch);
        let action = match listed.get(&s.id) {
            None if s.phase == Phase::Unknown => {
                if marker(&f.exit).is_some() {
                    Action::Collect(None)
                } else if let Some(why) = s.cancel {
                    Action::CancelUnsubmitted(why)
                } else {
                    Action::Submit
                }
            }
            None => {
                let mut jobs = sh.lock();
                let Some(j) = jobs.get_mut(&s.key) else {
                    continue;
                };
                let since = *j.missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() < GRACE && marker(&f.exit).is_none() {
                    Action::Wait
                } else {
                    Action::Collect(None)
                }
            }
            Some(rj) => {
                let changed = {
                    let mut jobs = sh.lock();
                    let Some(j) = jobs.get_mut(&s.key) else {
                        continue;
                    };
                    j.phase = Phase::Submitted;
                    j.submit_failing_since = None;
                    if rj.status == "RUNNING" && j.running_since.is_none() {
                        j.running_since = Some(
                            std::fs::read_to_string(&f.start)
                                .ok()
                                .and_then(|s| s.trim().parse::<f64>().ok())
                                .unwrap_or(t),
                        );
                    }
                    let changed = j.state != rj.status;
                    j.state = rj.status.clone();
                    changed
                };
                if changed && !rj.terminal() {
                    sh.send_state(&s.launch, &rj.status);
                }
                if rj.terminal() {
                    let succeeded_unmarked = rj.status == "SUCCEEDED" && marker(&f.exit).is_none();
                    let waiting = succeeded_unmarked && {
                        let mut jobs = sh.lock();
                        jobs.get_mut(&s.key).is_some_and(|j| {
                            j.missing_since.get_or_insert_with(Instant::now).elapsed() < GRACE
                        })
                    };
                    if waiting {
                        Action::Wait
                    } else {
                        Action::Collect(Some(rj.clone()))
                    }
                } else if let (Some(why), "PENDING") = (s.cancel, rj.status.as_str()) {
                    // Ray holds a stop for a pending job until it is scheduled (a GPU frees
                    // up): the trial ends now, and the marker keeps its command from running.
                    let _ = std::fs::write(&f.cancel, b"");
                    Action::StopPending(why)
                } else if s.stop_sent {
                    Action::Wait
                } else if s.cancel.is_some() {
                    Action::Stop { timeout: false }
                } else if s
                    .running_since
                    .is_some_and(|since| t - since > s.launch.spec.timeout_secs)
                {
                    Action::Stop { timeout: true }
                } else {
                    Action::Wait
                }
            }
        };
        actions.push((s, action));
    }
    // Submissions and stops go out together; each is one request.
    let mut requests = tokio::task::JoinSet::new();
    for (s, action) in &actions {
        match action {
            Action::Submit => {
                let f = files(&s.launch);
                let body = submission(&sh.cfg, &s.launch, &s.id, &f);
                // A fresh start for the attempt's files (a re-submission after a restart too).
                let _ = std::fs::create_dir_all(&s.launch.run_dir);
                let _ = std::fs::remove_file(&f.exit);
                let _ = std::fs::remove_file(&f.start);
                let _ = std::fs::remove_file(&f.cancel);
                let _ = std::fs::write(&f.metrics, b"");
                if let Some(j) = sh.lock().get_mut(&s.key) {
                    j.tail = MetricsTail::new(f.metrics.clone());
                }
                let (api, key, id) = (sh.api.clone(), s.key.clone(), s.id.clone());
                requests.spawn(async move {
                    let r = match body {
                        Ok(b) => api
                            .json(Method::POST, "/api/jobs/", Some(&b))
                            .await
                            .map(|_| ()),
                        Err(e) => Err(ApiError::Status(400, e)),
                    };
                    (key, id, true, false, r)
                });
            }
            Action::Stop { .. } | Action::StopPending(_) => {
                let timeout = matches!(action, Action::Stop { timeout: true });
                let (api, key, id) = (sh.api.clone(), s.key.clone(), s.id.clone());
                if timeout {
                    tracing::warn!(study = %s.launch.study, trial = s.launch.trial, job = %s.id, "ray: stopping a job past its timeout");
                }
                requests.spawn(async move {
                    let r = api
                        .json(Method::POST, &format!("/api/jobs/{id}/stop"), None)
                        .await
                        .map(|_| ());
                    (key, id, false, timeout, r)
                });
            }
            _ => {}
        }
    }
    while let Some(done) = requests.join_next().await {
        let Ok((key, id, submit, timeout, r)) = done else {
            continue;
        };
        let mut jobs = sh.lock();
        let Some(j) = jobs.get_mut(&key).filter(|j| j.id == id) else {
            continue;
        };
        match (submit, r) {
            (true, Ok(())) => {
                j.phase = Phase::Submitted;
                j.submit_failing_since = None;
                tracing::info!(study = %key.0, trial = key.1, job = %j.id, "ray: submitted");
            }
            (true, Err(ApiError::Status(_, text))) if text.contains("already exists") => {
                j.phase = Phase::Submitted;
            }
            (true, Err(ApiError::Status(code, text))) if (400..500).contains(&code) => {
                let launch = j.launch.clone();
                let id = j.id.clone();
                jobs.remove(&key);
                drop(jobs);
                let _ = sh.events.send(ExecEvent::Finished {
                    study: launch.study.clone(),
                    trial: launch.trial,
                    attempt: launch.attempt,
                    outcome: AttemptOutcome::Failed {
                        reason: format!(
                            "Ray refused job {id} (HTTP {code}): {}",
                            last_line(&text, 400)
                        ),
                        stderr_tail: None,
                    },
                });
            }
            (true, Err(e)) => {
                let since = *j.submit_failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SUBMIT_PATIENCE {
                    let launch = j.launch.clone();
                    jobs.remove(&key);
                    drop(jobs);
                    let _ = sh.events.send(ExecEvent::Finished {
                        study: launch.study.clone(),
                        trial: launch.trial,
                        attempt: launch.attempt,
                        outcome: AttemptOutcome::Failed {
                            reason: format!(
                                "cannot submit to Ray for {}: {e}",
                                crate::model::duration::format_secs(SUBMIT_PATIENCE.as_secs_f64())
                            ),
                            stderr_tail: None,
                        },
                    });
                } else {
                    tracing::warn!(study = %key.0, trial = key.1, "ray: submission failed, retrying: {e}");
                    if j.state != "SUBMITTING" {
                        j.state = "SUBMITTING".into();
                        let launch = j.launch.clone();
                        drop(jobs);
                        sh.send_state(&launch, "SUBMITTING");
                    }
                }
            }
            (false, Ok(())) => {
                j.stop_sent = true;
                j.timed_out |= timeout;
            }
            (false, Err(e)) => {
                tracing::warn!(study = %key.0, trial = key.1, "ray: cannot stop job {}: {e}", j.id)
            }
        }
    }
    collect(sh, actions).await;
}

/// Ends the jobs a round found over: the outcome, with the log's tail where it helps.
async fn collect(sh: &Arc<Shared>, actions: Vec<(&Snapshot, Action)>) {
    for (s, action) in actions {
        // Only a job Ray lists as ended can be deleted.
        let deletable = matches!(&action, Action::Collect(Some(_)));
        let outcome = match action {
            Action::Collect(ray) => {
                let f = files(&s.launch);
                let code = marker(&f.exit);
                // A metrics file that broke a limit (or is not a regular file) fails the job.
                let (metrics, refused) = match protocol::read_metrics_file(&f.metrics) {
                    Ok(text) => (text, None),
                    Err(reason) => (String::new(), Some(reason)),
                };
                let clean = code == Some(0) && s.cancel.is_none() && refused.is_none();
                let stderr_tail = if clean || ray.is_none() {
                    None
                } else {
                    sh.api
                        .log_tail(&s.id, crate::executor::local::STDERR_TAIL_BYTES)
                        .await
                };
                match refused {
                    Some(reason) if s.cancel.is_none() && !s.timed_out => AttemptOutcome::Failed {
                        reason,
                        stderr_tail,
                    },
                    _ => outcome(End {
                        id: &s.id,
                        ray: ray.as_ref(),
                        marker: code,
                        why: s.cancel,
                        timed_out: s.timed_out,
                        timeout_secs: s.launch.spec.timeout_secs,
                        metrics: &metrics,
                        stderr_tail,
                    }),
                }
            }
            Action::CancelUnsubmitted(why) | Action::StopPending(why) => {
                AttemptOutcome::Cancelled {
                    why,
                    stderr_tail: None,
                }
            }
            Action::Fail(reason) => AttemptOutcome::Failed {
                reason,
                stderr_tail: None,
            },
            _ => continue,
        };
        {
            let mut jobs = sh.lock();
            if jobs.get(&s.key).is_none_or(|j| j.id != s.id) {
                continue;
            }
            jobs.remove(&s.key);
        }
        if sh.cfg.delete_finished && deletable {
            sh.deletions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Deletion {
                    id: s.id.clone(),
                    due: Instant::now() + DELETE_DELAY,
                    tries: 0,
                });
        }
        let _ = sh.events.send(ExecEvent::Finished {
            study: s.launch.study.clone(),
            trial: s.launch.trial,
            attempt: s.launch.attempt,
            outcome,
        });
    }
}

/// A round without an answer from Ray: jobs whose exit marker is there are collected from it;
/// past [`SUBMIT_PATIENCE`] without contact, a job Ray may never have received fails, and one
/// it had is re-run without costing a retry (its node and its log are out of reach).
async fn unreachable(sh: &Arc<Shared>, snapshot: &[Snapshot], e: &ApiError) {
    tracing::warn!("ray: cannot list jobs: {e}");
    // What `quantune status` shows meanwhile: a refused token is the operator's to fix.
    let label = match e {
        ApiError::Status(401 | 403, _) => {
            "UNAUTHORIZED (check executor.ray.token_file / headers_file)"
        }
        _ => "UNREACHABLE",
    };
    let mut actions = Vec::new();
    let mut states = Vec::new();
    for s in snapshot {
        let action = {
            let mut jobs = sh.lock();
            let Some(j) = jobs.get_mut(&s.key) else {
                continue;
            };
            let since = *j.unreachable_since.get_or_insert_with(Instant::now);
            let patience = crate::model::duration::format_secs(SUBMIT_PATIENCE.as_secs_f64());
            if s.phase == Phase::Submitted && marker(&files(&s.launch).exit).is_some() {
                Action::Collect(None)
            } else if since.elapsed() < SUBMIT_PATIENCE {
                if j.state != label {
                    j.state = label.into();
                    states.push(s.launch.clone());
                }
                Action::Wait
            } else if s.phase == Phase::Unknown {
                Action::Fail(format!("cannot submit to Ray for {patience}: {e}"))
            } else {
                Action::Fail(format!(
                    "{REQUEUE_PREFIX}no answer from Ray for {patience} about job {}: {e}",
                    s.id
                ))
            }
        };
        actions.push((s, action));
    }
    for l in states {
        sh.send_state(&l, label);
    }
    collect(sh, actions).await;
}

/// The exit status the entrypoint recorded, if it got that far.
fn marker(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
}

/// The last non-empty line of `text` (Ray's error replies end with the exception), at most
/// `max` characters.
fn last_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::slots::Slot;
    use crate::model::study::{TrialSpec, Workload};
    use quantune_strategies::{ParamValue, Params};

    fn cfg(extra: &str) -> RayConfig {
        toml::from_str(&format!("shared_dir = \"/shared\"\n{extra}")).unwrap()
    }

    fn launch(gpus: u32) -> Launch {
        let mut params = Params::new();
        params.insert("q".into(), ParamValue::Str("it's; rm -rf /".into()));
        let spec = TrialSpec {
            workload: Workload::Command,
            command: vec!["python3".into(), "--q={q}".into()],
            working_dir: "/w d".into(),
            env: [("A".to_string(), "$(x)".to_string())].into(),
            gpus,
            gpu_memory: None,
            timeout_secs: 60.0,
            retries: 0,
            executor: "ray".into(),
            settings: Default::default(),
        };
        Launch {
            study: "s".into(),
            trial: 3,
            attempt: 2,
            params,
            spec: Arc::new(spec),
            slot: Slot::detached("ray"),
            run_dir: "/shared/s/3".into(),
        }
    }

    #[test]
    fn submission_quotes_the_command_and_carries_resources_and_env() {
        let l = launch(2);
        let f = files(&l);
        let c = cfg("num_cpus = 0.5\nmemory = \"2GiB\"\nresources = { special = 1.0 }\n[runtime_env]\npip = [\"numpy\"]\nenv_vars = { B = \"c\", A = \"overridden\" }\n");
        let b = submission(&c, &l, "id-1", &f).unwrap();
        let ep = b["entrypoint"].as_str().unwrap();
        assert!(
            ep.starts_with("[ ! -e '/shared/s/3/cancel.2' ] || {"),
            "{ep}"
        );
        assert!(
            ep.contains("date +%s > '/shared/s/3/start.2'; cd '/w d' || {"),
            "{ep}"
        );
        assert!(
            ep.contains("'python3' '--q=it'\\''s; rm -rf /'; code=$?"),
            "{ep}"
        );
        assert!(
            ep.ends_with("mv '/shared/s/3/exit.2.tmp' '/shared/s/3/exit.2'; exit \"$code\""),
            "{ep}"
        );
        assert_eq!(b["submission_id"], "id-1");
        assert_eq!(b["entrypoint_num_cpus"], 0.5);
        assert_eq!(b["entrypoint_num_gpus"], 2);
        assert_eq!(b["entrypoint_memory"], 2u64 << 30);
        assert_eq!(b["entrypoint_resources"]["special"], 1.0);
        let env = &b["runtime_env"]["env_vars"];
        assert_eq!(env["A"], "$(x)", "the trial's env wins");
        assert_eq!(env["B"], "c");
        assert_eq!(env["QUANTUNE_ATTEMPT"], "2");
        assert_eq!(env["QUANTUNE_METRICS_FILE"], "/shared/s/3/metrics.2.jsonl");
        assert_eq!(b["runtime_env"]["pip"][0], "numpy");
        assert_eq!(b["metadata"]["quantune_trial"], "3");
        // No GPUs: no GPU request. A runtime_env working_dir replaces the cd.
        let c = cfg("[runtime_env]\nworking_dir = \"s3://bucket/code.zip\"\n");
        let b = submission(&c, &launch(0), "id-2", &f).unwrap();
        assert!(b.get("entrypoint_num_gpus").is_none());
        assert_eq!(b["entrypoint_num_cpus"], 1.0);
        assert!(!b["entrypoint"].as_str().unwrap().contains("cd '"));
    }

    #[test]
    fn shipped_config_examples_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in ["deploy/quantune.toml", "configs/daemon/quantune.toml"] {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            let block: String = text
                .lines()
                .skip_while(|l| *l != "# [executor.ray]")
                .skip(1)
                .take_while(|l| l.starts_with("# "))
                .map(|l| format!("{}\n", &l[2..]))
                .collect();
            assert!(
                block.contains("shared_dir"),
                "{f}: no [executor.ray] example"
            );
            let c: RayConfig = toml::from_str(&block).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(c.address, "http://ray-head:8265", "{f}");
            assert!(c.token_file.is_some(), "{f}");
        }
    }

    #[test]
    fn runtime_env_checks_name_the_key() {
        let t = |s: &str| check_runtime_env(&toml::from_str(s).unwrap());
        assert!(
            t("pip = [\"x\"]\nenv_vars = { A = \"1\" }\nworking_dir = \"s3://b/c.zip\"").is_ok()
        );
        assert!(t("env_vars = { A = 1 }")
            .unwrap_err()
            .contains("env_vars.A must be a string"));
        assert!(t("env_vars = 3").unwrap_err().contains("table of strings"));
        assert!(t("working_dir = \"/code\"")
            .unwrap_err()
            .contains("not a local directory"));
    }

    #[test]
    fn addresses_and_headers() {
        assert_eq!(
            parse_address("http://127.0.0.1:8265").unwrap(),
            ("127.0.0.1:8265".into(), "".into())
        );
        assert_eq!(
            parse_address("http://ray-head/proxy/ray/").unwrap(),
            ("ray-head:80".into(), "/proxy/ray".into())
        );
        assert!(parse_address("https://x:1").unwrap_err().contains("https"));
        assert!(parse_address("127.0.0.1:8265")
            .unwrap_err()
            .contains("http://HOST:PORT"));
        assert!(parse_address("http://h:x").is_err());
        let h = parse_headers(
            Path::new("h"),
            "# c\n\nAuthorization: Bearer abc\nX-A:  b \n",
        )
        .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].1, "Bearer abc");
        assert_eq!(h[1].0.as_str(), "x-a");
        let e = parse_headers(Path::new("h"), "ok: 1\nno colon\n").unwrap_err();
        assert!(e.contains("h:2") && e.contains("Name: value"), "{e}");
    }

    #[test]
    fn secrets_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "tok\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret("token_file", &p).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = cfg(&format!("token_file = {:?}", p));
        let api = Api::from_config(&c).unwrap();
        assert_eq!(api.headers[0].1, "Bearer tok");
    }

    fn ray(status: &str, kind: Option<&str>, code: Option<i64>) -> RayJob {
        RayJob {
            submission_id: "j".into(),
            status: status.into(),
            message: "Job supervisor actor died: node lost\nmore".into(),
            error_type: kind.map(str::to_string),
            driver_exit_code: code,
        }
    }

    fn end<'a>(ray: Option<&'a RayJob>, marker: Option<i32>, why: Option<CancelReason>) -> End<'a> {
        End {
            id: "j",
            ray,
            marker,
            why,
            timed_out: false,
            timeout_secs: 60.0,
            metrics: "{\"loss\": 1.5}\n",
            stderr_tail: Some("tail".into()),
        }
    }

    fn reason(o: AttemptOutcome) -> String {
        match o {
            AttemptOutcome::Failed { reason, .. } => reason,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn ray_failure_kinds_map_to_outcomes() {
        let ok = ray("SUCCEEDED", None, Some(0));
        assert!(matches!(
            outcome(end(Some(&ok), Some(0), None)),
            AttemptOutcome::Complete { .. }
        ));
        let failed = ray("FAILED", Some("JOB_ENTRYPOINT_COMMAND_ERROR"), Some(3));
        assert_eq!(
            reason(outcome(end(Some(&failed), Some(3), None))),
            "exit status 3"
        );
        // The entrypoint died before its marker (cd failed, or the shell was killed).
        assert_eq!(
            reason(outcome(end(Some(&failed), None, None))),
            "exit status 3"
        );
        let killed = ray("FAILED", Some("JOB_ENTRYPOINT_COMMAND_ERROR"), Some(-9));
        assert!(reason(outcome(end(Some(&killed), None, None))).contains("signal 9"));
        // Ray's own failures re-run without costing a retry.
        let died = ray("FAILED", Some("JOB_SUPERVISOR_ACTOR_DIED"), None);
        let r = reason(outcome(end(Some(&died), None, None)));
        assert!(
            r.starts_with(REQUEUE_PREFIX) && r.ends_with("node lost"),
            "{r}"
        );
        let stopped = ray("STOPPED", None, None);
        assert!(reason(outcome(end(Some(&stopped), None, None))).starts_with(REQUEUE_PREFIX));
        assert!(reason(outcome(end(None, None, None))).starts_with(REQUEUE_PREFIX));
        // A broken runtime_env is the configuration's fault: it costs a retry.
        let env = ray("FAILED", Some("RUNTIME_ENV_SETUP_FAILURE"), None);
        let r = reason(outcome(end(Some(&env), None, None)));
        assert!(
            !r.starts_with(REQUEUE_PREFIX) && r.contains("RUNTIME_ENV_SETUP_FAILURE"),
            "{r}"
        );
        // Stopped at quantune's request.
        assert!(matches!(
            outcome(end(Some(&stopped), None, Some(CancelReason::Pruned))),
            AttemptOutcome::Cancelled {
                why: CancelReason::Pruned,
                ..
            }
        ));
        assert!(matches!(
            outcome(end(Some(&failed), Some(143), Some(CancelReason::User))),
            AttemptOutcome::Cancelled {
                why: CancelReason::User,
                ..
            }
        ));
        let mut e = end(Some(&stopped), None, None);
        e.timed_out = true;
        assert!(reason(outcome(e)).starts_with("timeout after 1m"));
        // Succeeded, but the marker never showed: the shared directory is not shared.
        assert!(reason(outcome(end(Some(&ok), None, None))).contains("shared_dir"));
    }
}
