//! One typed function per daemon endpoint the CLI uses. Every API path the client sends lives
//! here, so a route that changes changes in one place (the daemon's side is `daemon::api`).

use crate::client::http::{segment, Client, ClientError};
use crate::model::leaderboard::Row;
use crate::model::results::ImportRequest;
use crate::model::wire::{
    AskReply, CopyRequest, DaemonStatus, DeleteReply, ExtendRequest, LogStream, NoteRequest,
    ReportRequest, StudySummary, SubmitRequest, TagRequest, TellRequest, TrialLog, TrialView,
};
use hyper::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A study's state change that `POST /v1/studies/{name}/{verb}` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Stop starting trials (running ones finish).
    Pause,
    /// Start trials again.
    Resume,
    /// Stop the running trials and end the study.
    Cancel,
}

impl Lifecycle {
    /// The verb in the URL.
    fn verb(self) -> &'static str {
        match self {
            Lifecycle::Pause => "pause",
            Lifecycle::Resume => "resume",
            Lifecycle::Cancel => "cancel",
        }
    }
}

/// `/v1/studies/{name}` with the name percent-encoded.
fn study_path(name: &str) -> String {
    format!("/v1/studies/{}", segment(name))
}

/// Serializes a request body.
fn body<T: Serialize>(v: &T) -> Result<Option<serde_json::Value>, ClientError> {
    serde_json::to_value(v)
        .map(Some)
        .map_err(|e| ClientError(format!("cannot encode the request: {e}")))
}

impl Client {
    /// `GET` + JSON decoding.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::GET, path, None).await
    }

    /// `POST /v1/studies`: submits a study definition.
    pub async fn submit(&self, req: &SubmitRequest) -> Result<StudySummary, ClientError> {
        self.json(Method::POST, "/v1/studies", body(req)?).await
    }

    /// `GET /v1/studies`: every study's summary.
    pub async fn studies(&self) -> Result<Vec<StudySummary>, ClientError> {
        self.get("/v1/studies").await
    }

    /// `GET /v1/studies/{name}`: one study's summary.
    pub async fn study(&self, name: &str) -> Result<StudySummary, ClientError> {
        self.get(&study_path(name)).await
    }

    /// `GET /v1/status`: the daemon, its slots and GPUs, and every study.
    pub async fn daemon_status(&self) -> Result<DaemonStatus, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/studies/{name}/trials`: every trial of a study.
    pub async fn trials(&self, name: &str) -> Result<Vec<TrialView>, ClientError> {
        self.get(&format!("{}/trials", study_path(name))).await
    }

    /// `GET /v1/studies/{name}/trials/{trial}`: one trial with its reports, as the daemon
    /// sends it.
    pub async fn trial(&self, name: &str, trial: u64) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("{}/trials/{trial}", study_path(name)))
            .await
    }

    /// `GET /v1/studies/{name}/leaderboard[?top=N]`: the ranked trials.
    pub async fn leaderboard(
        &self,
        name: &str,
        top: Option<usize>,
    ) -> Result<Vec<Row>, ClientError> {
        let q = top.map(|n| format!("?top={n}")).unwrap_or_default();
        self.get(&format!("{}/leaderboard{q}", study_path(name)))
            .await
    }

    /// `POST /v1/studies/{name}/{pause|resume|cancel}`.
    pub async fn lifecycle(
        &self,
        name: &str,
        what: Lifecycle,
    ) -> Result<StudySummary, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/{}", study_path(name), what.verb()),
            None,
        )
        .await
    }

    /// `POST /v1/studies/{name}/ask`: a new trial's parameters.
    pub async fn ask(&self, name: &str) -> Result<AskReply, ClientError> {
        self.json(Method::POST, &format!("{}/ask", study_path(name)), None)
            .await
    }

    /// `POST /v1/studies/{name}/trials/{trial}/report`: an intermediate report; the reply says
    /// whether the trial should stop.
    pub async fn report(
        &self,
        name: &str,
        trial: u64,
        req: &ReportRequest,
    ) -> Result<serde_json::Value, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/trials/{trial}/report", study_path(name)),
            body(req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/trials/{trial}/tell`: a trial's outcome.
    pub async fn tell(
        &self,
        name: &str,
        trial: u64,
        req: &TellRequest,
    ) -> Result<TrialView, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/trials/{trial}/tell", study_path(name)),
            body(req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/enqueue`: queues a trial with the given parameters.
    pub async fn enqueue(
        &self,
        name: &str,
        params: &serde_json::Value,
    ) -> Result<TrialView, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/enqueue", study_path(name)),
            Some(serde_json::json!({ "params": params })),
        )
        .await
    }

    /// `GET /v1/studies/{name}/export`: the study's JSON lines (definition, trials, reports).
    pub async fn export(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        self.call(Method::GET, &format!("{}/export", study_path(name)), None)
            .await
    }

    /// `POST /v1/studies/{name}/import`: results from outside, each as a finished trial.
    pub async fn import_results(
        &self,
        name: &str,
        req: &ImportRequest,
    ) -> Result<Vec<TrialView>, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/import", study_path(name)),
            body(req)?,
        )
        .await
    }

    /// `POST /v1/import[?as=NAME]`: export (or backup) JSON lines, the one study renamed when
    /// `to` is given; the reply counts what was imported.
    pub async fn import_export(
        &self,
        data: Vec<u8>,
        to: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let path = match to {
            Some(to) => format!("/v1/import?as={}", segment(to)),
            None => "/v1/import".to_string(),
        };
        let reply = self.call(Method::POST, &path, Some(data)).await?;
        serde_json::from_slice(&reply)
            .map_err(|e| ClientError(format!("unexpected reply from the daemon: {e}")))
    }

    /// `DELETE /v1/studies/{name}`: stops its running trials, then removes it.
    pub async fn delete(&self, name: &str) -> Result<DeleteReply, ClientError> {
        self.json(Method::DELETE, &study_path(name), None).await
    }

    /// `POST /v1/studies/{name}/extend`: raises its budgets (a completed study runs again).
    pub async fn extend(
        &self,
        name: &str,
        req: &ExtendRequest,
    ) -> Result<StudySummary, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/extend", study_path(name)),
            body(req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/tags`: adds and removes tags.
    pub async fn tag(&self, name: &str, req: &TagRequest) -> Result<StudySummary, ClientError> {
        self.json(
            Method::POST,
            &format!("{}/tags", study_path(name)),
            body(req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/note`: sets the study's notes.
    pub async fn study_note(&self, name: &str, note: &str) -> Result<StudySummary, ClientError> {
        let req = NoteRequest { note: note.into() };
        self.json(
            Method::POST,
            &format!("{}/note", study_path(name)),
            body(&req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/trials/{trial}/note`: sets a trial's note.
    pub async fn trial_note(
        &self,
        name: &str,
        trial: u64,
        note: &str,
    ) -> Result<TrialView, ClientError> {
        let req = NoteRequest { note: note.into() };
        self.json(
            Method::POST,
            &format!("{}/trials/{trial}/note", study_path(name)),
            body(&req)?,
        )
        .await
    }

    /// `POST /v1/studies/{name}/copy`: a new, independent study `to` with every trial.
    pub async fn copy(&self, name: &str, to: &str) -> Result<StudySummary, ClientError> {
        let req = CopyRequest { to: to.into() };
        self.json(
            Method::POST,
            &format!("{}/copy", study_path(name)),
            body(&req)?,
        )
        .await
    }

    /// `GET /v1/backup`: every study as one consistent export.
    pub async fn backup(&self) -> Result<Vec<u8>, ClientError> {
        self.call(Method::GET, "/v1/backup", None).await
    }

    /// `GET /v1/studies/{name}/trials/{trial}/logs`: a piece of an attempt's stdout or stderr
    /// from byte `offset` (`attempt` `None`: the current one).
    pub async fn trial_log(
        &self,
        name: &str,
        trial: u64,
        attempt: Option<u32>,
        stream: LogStream,
        offset: u64,
    ) -> Result<TrialLog, ClientError> {
        let attempt = attempt.map(|a| format!("&attempt={a}")).unwrap_or_default();
        self.get(&format!(
            "{}/trials/{trial}/logs?stream={}&offset={offset}{attempt}",
            study_path(name),
            stream.as_str()
        ))
        .await
    }

    /// `GET` of a web page under `/ui/`: status, content type and body, whatever the status.
    pub async fn ui_page(
        &self,
        path_and_query: &str,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), ClientError> {
        if !path_and_query.starts_with("/ui/") {
            return Err(ClientError(format!(
                "{path_and_query} is not a web page path (they start with /ui/)"
            )));
        }
        self.send(Method::GET, path_and_query, None).await
    }
}
