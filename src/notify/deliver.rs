//! One webhook delivery (docs/NOTIFY.md, "Delivery"): the payload POSTed as JSON with its
//! HMAC-SHA256 signature, its delivery id and event in headers; retried with exponential
//! backoff and jitter on network errors, timeouts, 5xx and 429, never on other statuses. Of
//! the answer only the status line and headers are read (at most [`MAX_HEAD`] bytes); the
//! body never is, so a receiver cannot make quantune hold more than that.

use super::target::Target;
use super::Payload;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>` (targets with a `secret_file`).
pub const SIGNATURE_HEADER: &str = "x-quantune-signature";
/// Header carrying the delivery id (the same on every retry).
pub const DELIVERY_HEADER: &str = "x-quantune-delivery";
/// Header carrying the event kind.
pub const EVENT_HEADER: &str = "x-quantune-event";
/// The wait before the first retry; each further one doubles it.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between attempts (also the most of a `Retry-After` that is honoured).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The most of an answer read: its status line and headers.
pub const MAX_HEAD: usize = 16 * 1024;

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The last HTTP status received, if any.
    pub status: Option<u16>,
    /// Why the last attempt got no status (connection refused, timeout, …).
    pub error: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

impl Outcome {
    /// Whether the receiver took it (a 2xx status).
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// `HTTP 204 (1 attempt)`, `HTTP 400 (1 attempt)`, `cannot connect: … (5 attempts)`.
    pub fn describe(&self) -> String {
        let what = match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!(
                "HTTP {s}{}",
                hyper::StatusCode::from_u16(s)
                    .ok()
                    .and_then(|c| c.canonical_reason())
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            ),
            (None, None) => "not sent".into(),
        };
        let n = self.attempts;
        format!("{what} ({n} attempt{})", if n == 1 { "" } else { "s" })
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Whether an answer (or its absence) is worth another attempt.
fn retryable(answer: &Result<(u16, Option<Duration>), String>) -> bool {
    match answer {
        Err(_) => true,
        Ok((s, _)) => *s == 429 || *s >= 500,
    }
}

/// The wait after failed attempt `k` (from 1): `FIRST_RETRY · 2^(k-1)` capped at
/// [`MAX_BACKOFF`], drawn from its upper half (jitter, so that many daemons do not retry in
/// step); at least the receiver's `Retry-After` (capped too).
pub fn backoff(k: u32, retry_after: Option<Duration>) -> Duration {
    let full = FIRST_RETRY
        .saturating_mul(1u32 << (k.saturating_sub(1)).min(16))
        .min(MAX_BACKOFF);
    let jittered = full.mul_f64(rand::random_range(0.5..=1.0));
    jittered.max(retry_after.unwrap_or_default().min(MAX_BACKOFF))
}

/// Delivers `payload` to `target`, retrying as the target's `max_attempts` allows.
pub async fn deliver(target: &Target, payload: &Payload) -> Outcome {
    deliver_with(target, payload, target.max_attempts).await
}

/// Delivers `payload` to `target` in at most `attempts` attempts.
pub async fn deliver_with(target: &Target, payload: &Payload, attempts: u32) -> Outcome {
    let body = Bytes::from(serde_json::to_vec(payload).unwrap_or_default());
    let mut k = 0;
    loop {
        k += 1;
        let answer = attempt(target, &body, payload).await;
        if k >= attempts.max(1) || !retryable(&answer) {
            return match answer {
                Ok((s, _)) => Outcome {
                    status: Some(s),
                    error: None,
                    attempts: k,
                },
                Err(e) => Outcome {
                    status: None,
                    error: Some(e),
                    attempts: k,
                },
            };
        }
        let wait = backoff(k, answer.as_ref().ok().and_then(|(_, r)| *r));
        match &answer {
            Ok((s, _)) => {
                tracing::debug!(url = %target.url, attempt = k, "webhook answered HTTP {s}; retrying in {wait:?}")
            }
            Err(e) => {
                tracing::debug!(url = %target.url, attempt = k, "webhook: {e}; retrying in {wait:?}")
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// One POST: the status and `Retry-After` of the answer, or why there was none.
async fn attempt(
    target: &Target,
    body: &Bytes,
    payload: &Payload,
) -> Result<(u16, Option<Duration>), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&target.authority)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.authority))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("no HTTP: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::post(target.path.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("quantune/", env!("CARGO_PKG_VERSION")),
            )
            .header(DELIVERY_HEADER, payload.delivery.as_str())
            .header(EVENT_HEADER, payload.event.as_str());
        if let Some(secret) = target.secret() {
            req = req.header(SIGNATURE_HEADER, signature(secret, body));
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| format!("bad request: {e}"))?;
        let answer = sender.send_request(req).await;
        // The body is never read: the connection goes with the answer's head.
        conn.abort();
        let resp = answer.map_err(|e| format!("no answer: {e}"))?;
        let retry_after = resp
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Ok((resp.status().as_u16(), retry_after))
    };
    tokio::time::timeout(target.timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                crate::model::duration::format_secs(target.timeout.as_secs_f64())
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for k in 1..=10 {
            let full = FIRST_RETRY.saturating_mul(1 << (k - 1)).min(MAX_BACKOFF);
            let d = backoff(k, None);
            assert!(d >= full / 2 && d <= full, "attempt {k}: {d:?} vs {full:?}");
        }
        assert_eq!(
            backoff(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(backoff(1, Some(Duration::from_secs(7200))), MAX_BACKOFF);
    }

    #[test]
    fn what_is_retried() {
        assert!(retryable(&Err("refused".into())));
        assert!(retryable(&Ok((500, None))));
        assert!(retryable(&Ok((429, None))));
        assert!(!retryable(&Ok((400, None))));
        assert!(!retryable(&Ok((404, None))));
        assert!(!retryable(&Ok((204, None))));
    }
}
