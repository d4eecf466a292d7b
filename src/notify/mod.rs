//! Webhook notifications (docs/NOTIFY.md): the `[[notify]]` targets of the daemon config
//! ([`target`]), the JSON payload every delivery carries ([`Payload`]), and signed delivery
//! over HTTP with retries ([`deliver`]). Shared by the daemon's notifier
//! (`daemon/notifier.rs`, fed by the scheduler) and `quantune notify test`
//! (`client/notify.rs`); it imports neither.

pub mod deliver;
pub mod target;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a notification is about (the payload's `event`, and what `events = [...]` lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A study's best trial changed (the trial `status` and the leaderboard call best).
    NewBest,
    /// A study completed.
    StudyCompleted,
    /// A study failed (`budget.max_failed` reached).
    StudyFailed,
    /// A study's last N finished trials all failed (N = `consecutive_failures`).
    ConsecutiveFailures,
    /// Sent by `quantune notify test` only.
    Test,
}

impl EventKind {
    /// The name in payloads and configs, e.g. `new_best`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NewBest => "new_best",
            EventKind::StudyCompleted => "study_completed",
            EventKind::StudyFailed => "study_failed",
            EventKind::ConsecutiveFailures => "consecutive_failures",
            EventKind::Test => "test",
        }
    }
}

/// The JSON body of every webhook delivery (docs/NOTIFY.md, "Payload").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// What happened.
    pub event: EventKind,
    /// This delivery's id (also the `X-Quantune-Delivery` header); retries keep it, so a
    /// receiver can drop duplicates.
    pub delivery: String,
    /// When the event happened, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The daemon's host name.
    pub host: String,
    /// The study (none for `test`).
    pub study: Option<String>,
    /// The study's state when the event happened (`running`, `completed`, `failed`, …).
    pub study_state: Option<String>,
    /// The trial it is about: the new best (`new_best`), the best so far (`study_completed`,
    /// `study_failed`), the last failed one (`consecutive_failures`).
    pub trial: Option<u64>,
    /// That trial's state.
    pub trial_state: Option<String>,
    /// That trial's objective values, by metric.
    pub values: BTreeMap<String, f64>,
    /// That trial's parameters.
    pub params: serde_json::Value,
    /// The study's message (why it ended) or the failed trial's reason.
    pub message: Option<String>,
    /// `consecutive_failures`: how many trials failed in a row.
    pub failures: Option<u64>,
}

impl Payload {
    /// A payload of `event` stamped now, with a fresh delivery id; the rest empty.
    pub fn new(event: EventKind) -> Payload {
        Payload {
            event,
            delivery: delivery_id(),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            host: host_name().to_string(),
            study: None,
            study_state: None,
            trial: None,
            trial_state: None,
            values: BTreeMap::new(),
            params: serde_json::Value::Null,
            message: None,
            failures: None,
        }
    }
}

/// A fresh delivery id: 128 random bits in hex.
pub fn delivery_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// This machine's host name (read once).
pub fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".into())
    })
}
