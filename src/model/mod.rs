//! The model: what a study, a trial and the API's messages are, and the rules that need no
//! runtime — parsing and validating study files, durations, the leaderboard's ranking,
//! parameter importance, checking imported results, the metric definitions. Nothing here
//! touches tokio, axum or sled, so the scheduler, the daemon and the client share one copy.

pub mod duration;
pub mod importance;
pub mod leaderboard;
pub mod metrics;
pub mod openapi;
pub mod preflight;
pub mod rename;
pub mod results;
pub mod study;
pub mod suggest;
pub mod wire;

/// Where the daemon's config file is when `--config` is not given (read by `serve` and by
/// `quantune notify test`).
pub const DEFAULT_CONFIG: &str = "/etc/quantune/quantune.toml";

/// A TOML error in config file `path` (whose text is `text`) as `PATH:LINE: message`.
pub fn toml_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> String {
    let loc = e
        .span()
        .map(|s| format!(":{}", line_of(text, s.start)))
        .unwrap_or_default();
    format!("{}{loc}: {}", path.display(), e.message().trim())
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
