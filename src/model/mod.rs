//! The model: what a study, a trial and the API's messages are, and the rules that need no
//! runtime — parsing and validating study files, durations, the leaderboard's ranking,
//! parameter importance, checking imported results, the metric definitions. Nothing here
//! touches tokio, axum or sled, so the scheduler, the daemon and the client share one copy.

pub mod duration;
pub mod importance;
pub mod leaderboard;
pub mod metrics;
pub mod openapi;
pub mod rename;
pub mod results;
pub mod study;
pub mod wire;

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
