//! `[[notify]]` in the daemon config: where to send which events, signed with which secret
//! (docs/NOTIFY.md). [`TargetConfig`] is what the file says; [`Target`] is it checked and
//! resolved (URL split, secret read, durations parsed).

use super::EventKind;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one delivery attempt may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts per delivery when `max_attempts` is not set.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// The most attempts `max_attempts` may ask for.
pub const MAX_ATTEMPTS: u32 = 20;

/// One `[[notify]]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The webhook, `http://HOST[:PORT]/PATH`.
    pub url: toml::Spanned<String>,
    /// Which events to send.
    pub events: Vec<EventKind>,
    /// With `consecutive_failures` in `events`: after how many failed trials in a row.
    pub consecutive_failures: Option<u64>,
    /// File holding the HMAC-SHA256 key the body is signed with (mode 0600).
    pub secret_file: Option<PathBuf>,
    /// Time one attempt may take, connect to response head (default "10s").
    pub timeout: Option<String>,
    /// Attempts per delivery, the first included (default 5).
    pub max_attempts: Option<u32>,
}

/// A checked `[[notify]]` target, its secret read.
#[derive(Clone)]
pub struct Target {
    /// The URL as configured.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// The request target: path and query.
    pub path: String,
    /// Events it wants.
    pub events: BTreeSet<EventKind>,
    /// Failed trials in a row that make a `consecutive_failures` event.
    pub failures_threshold: u64,
    /// HMAC key (never printed: `Debug` leaves it out).
    secret: Option<Vec<u8>>,
    /// Time one attempt may take.
    pub timeout: Duration,
    /// Attempts per delivery.
    pub max_attempts: u32,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("events", &self.events)
            .field("failures_threshold", &self.failures_threshold)
            .field("signed", &self.secret.is_some())
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl Target {
    /// Whether it wants `kind` (every target gets `test`).
    pub fn wants(&self, kind: EventKind) -> bool {
        kind == EventKind::Test || self.events.contains(&kind)
    }

    /// The HMAC key, if the target signs.
    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }
}

/// Splits `http://HOST[:PORT][/PATH]` into the authority (`host:port`) and the request
/// target. https is refused: quantune's HTTP client speaks plain HTTP only.
pub fn split_url(url: &str) -> Result<(String, String), String> {
    if url.starts_with("https://") {
        return Err(
            "https is not supported (quantune's HTTP client speaks plain HTTP); send to an http:// receiver, e.g. a local relay or a TLS-terminating proxy".into(),
        );
    }
    let bad = || "must look like http://HOST:PORT/PATH".to_string();
    let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    let auth = uri.authority().ok_or_else(bad)?;
    if auth.as_str().contains('@') || auth.host().is_empty() {
        return Err(bad());
    }
    let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((authority, path))
}

/// Checks and resolves the `[[notify]]` tables of config file `file` (text `text`): every
/// error names the file, the line of the entry's `url` and the key.
pub fn resolve(file: &Path, text: &str, configs: &[TargetConfig]) -> Result<Vec<Target>, String> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let line = crate::model::line_of(text, c.url.span().start);
            let at = |key: &str, msg: String| {
                format!("{}:{line}: notify[{i}].{key}: {msg}", file.display())
            };
            let url = c.url.get_ref().clone();
            let (authority, path) = split_url(&url).map_err(|m| at("url", format!("\"{url}\": {m}")))?;
            if c.events.is_empty() {
                return Err(at(
                    "events",
                    "name at least one of \"new_best\", \"study_completed\", \"study_failed\", \"consecutive_failures\"".into(),
                ));
            }
            let events: BTreeSet<EventKind> = c.events.iter().copied().collect();
            if events.contains(&EventKind::Test) {
                return Err(at(
                    "events",
                    "\"test\" is sent by `quantune notify test` to every target; leave it out".into(),
                ));
            }
            let failures_threshold = match (events.contains(&EventKind::ConsecutiveFailures), c.consecutive_failures) {
                (true, None) => {
                    return Err(at(
                        "consecutive_failures",
                        "events has \"consecutive_failures\": say after how many failed trials in a row, e.g. consecutive_failures = 3".into(),
                    ))
                }
                (_, Some(0)) => return Err(at("consecutive_failures", "must be at least 1".into())),
                (false, Some(_)) => {
                    return Err(at(
                        "consecutive_failures",
                        "is set but events lacks \"consecutive_failures\"; add it there".into(),
                    ))
                }
                (_, n) => n.unwrap_or(0),
            };
            let timeout = match &c.timeout {
                None => DEFAULT_TIMEOUT,
                Some(t) => crate::model::duration::parse_duration(t)
                    .map(Duration::from_secs_f64)
                    .map_err(|e| at("timeout", e))?,
            };
            if timeout.is_zero() {
                return Err(at("timeout", "must be longer than 0s".into()));
            }
            let max_attempts = c.max_attempts.unwrap_or(DEFAULT_ATTEMPTS);
            if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
                return Err(at("max_attempts", format!("must be between 1 and {MAX_ATTEMPTS}")));
            }
            let secret = match &c.secret_file {
                None => None,
                Some(p) => {
                    let key = format!("notify[{i}].secret_file");
                    let s = crate::secret::read(&key, p).map_err(|e| format!("{}:{line}: {e}", file.display()))?;
                    let s = s.trim();
                    if s.is_empty() {
                        return Err(at("secret_file", format!("{} is empty; write the shared secret into it", p.display())));
                    }
                    Some(s.as_bytes().to_vec())
                }
            };
            Ok(Target {
                url,
                authority,
                path,
                events,
                failures_threshold,
                secret,
                timeout,
                max_attempts,
            })
        })
        .collect()
}

/// Reads only the `[[notify]]` tables of the daemon config `path` (what `quantune notify test`
/// needs; `serve` checks the whole file).
pub fn load(path: &Path) -> Result<Vec<Target>, String> {
    #[derive(Deserialize)]
    struct OnlyNotify {
        #[serde(default)]
        notify: Vec<TargetConfig>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
    let file: OnlyNotify =
        toml::from_str(&text).map_err(|e| crate::model::toml_error(path, &text, &e))?;
    resolve(path, &text, &file.notify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Result<Vec<Target>, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.toml");
        std::fs::write(&p, body).unwrap();
        load(&p)
    }

    #[test]
    fn urls_split_and_https_is_refused() {
        assert_eq!(
            split_url("http://127.0.0.1:9000/hooks/q?x=1").unwrap(),
            ("127.0.0.1:9000".into(), "/hooks/q?x=1".into())
        );
        assert_eq!(
            split_url("http://relay").unwrap(),
            ("relay:80".into(), "/".into())
        );
        assert!(split_url("https://hooks.slack.com/x")
            .unwrap_err()
            .contains("https is not supported"));
        assert!(split_url("ftp://x/y").is_err());
        assert!(split_url("http://user:pw@x/y").is_err());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let e = check("web = true\n[[notify]]\nurl = \"http://h:1/\"\nevents = [\"new_best\", \"consecutive_failures\"]\n").unwrap_err();
        assert!(
            e.contains("q.toml:3: notify[0].consecutive_failures"),
            "{e}"
        );
        let e = check("[[notify]]\nurl = \"http://h:1/\"\nevents = [\"new-best\"]\n").unwrap_err();
        assert!(e.contains("q.toml:3") && e.contains("new_best"), "{e}");
        let e = check("[[notify]]\nurl = \"https://h/\"\nevents = [\"new_best\"]\n").unwrap_err();
        assert!(
            e.contains("q.toml:2: notify[0].url") && e.contains("https"),
            "{e}"
        );
        let e = check("[[notify]]\nurl = \"http://h/\"\nevents = [\"new_best\"]\nsecret_file = \"/nonexistent/s\"\n").unwrap_err();
        assert!(e.contains("notify[0].secret_file /nonexistent/s"), "{e}");
        let e =
            check("[[notify]]\nurl = \"http://h/\"\nevents = [\"new_best\"]\ntimeout = \"soon\"\n")
                .unwrap_err();
        assert!(e.contains("notify[0].timeout"), "{e}");
        let t = check("[[notify]]\nurl = \"http://h:8/x\"\nevents = [\"study_failed\", \"consecutive_failures\"]\nconsecutive_failures = 3\n").unwrap();
        assert_eq!(t[0].failures_threshold, 3);
        assert!(t[0].wants(EventKind::StudyFailed) && !t[0].wants(EventKind::NewBest));
        assert_eq!(t[0].timeout, DEFAULT_TIMEOUT);
    }
}
