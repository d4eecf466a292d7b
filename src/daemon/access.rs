//! Who may use the API and who did what: the identity of the peer on each connection
//! (`SO_PEERCRED` on the Unix socket, the address on TCP), the audit line logged for every
//! mutating request, and the bearer-token check that guards the optional TCP listener.
//!
//! The Unix socket's guard is the file system (mode 0660, group `socket_group`); the kernel
//! refuses everyone else before a byte reaches the daemon. TCP has no such guard, so every
//! request on it must carry the token from `tcp.token_file`, compared in constant time.

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::path::Path;
use std::sync::Arc;

/// The other end of an API connection, taken when it is accepted.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A Unix-socket client, identified by the kernel (`SO_PEERCRED`).
    Unix {
        /// Its user id (`None` if the kernel would not say).
        uid: Option<u32>,
        /// Its group id.
        gid: Option<u32>,
        /// Its process id.
        pid: Option<i32>,
    },
    /// A TCP client.
    Tcp(std::net::SocketAddr),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        match self {
            Peer::Unix { uid, gid, pid } => write!(
                f,
                "unix uid={} gid={} pid={}",
                opt(uid.map(|u| u.to_string())),
                opt(gid.map(|g| g.to_string())),
                opt(pid.map(|p| p.to_string()))
            ),
            Peer::Tcp(addr) => write!(f, "tcp {addr}"),
        }
    }
}

impl Peer {
    /// The client at the other end of a Unix-socket connection, as the kernel names it.
    pub fn of_unix(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer::Unix {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
                pid: c.pid(),
            },
            Err(_) => Peer::Unix {
                uid: None,
                gid: None,
                pid: None,
            },
        }
    }
}

/// Logs one line per mutating request (anything but GET/HEAD): who, what, and the answer.
/// Read-only requests are not logged: a dashboard polling `leaderboard` would drown the rest.
pub async fn audit(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown peer".into());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::info!(
        target: "quantune::audit",
        "{method} {path} by {peer} -> {}",
        resp.status().as_u16()
    );
    resp
}

/// The TCP listener's bearer token.
pub struct Token(Vec<u8>);

/// The shortest token accepted: 16 random bytes written as hex are 32 characters.
pub const MIN_TOKEN_LEN: usize = 16;

impl Token {
    /// Reads the token from `path`, refusing a file that group or others can read, that is not
    /// a regular file, or that holds a token too short to resist guessing.
    pub fn load(path: &Path) -> Result<Token, String> {
        let text = crate::secret::read("tcp.token_file", path)?;
        let token = text.trim();
        if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "tcp.token_file {} must hold one token of at least {MIN_TOKEN_LEN} characters without spaces (e.g. from `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`)",
                path.display()
            ));
        }
        Ok(Token(token.as_bytes().to_vec()))
    }

    /// A token from its text (tests).
    pub fn from_text(text: &str) -> Token {
        Token(text.as_bytes().to_vec())
    }

    /// Whether `presented` is the token, in time that depends only on the token's length.
    pub fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(&self.0, presented)
    }
}

/// Compares a secret with a presented value, touching every byte of the secret whatever the
/// presented value is, so the time taken says nothing about how much of it matched.
pub fn constant_time_eq(secret: &[u8], presented: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != presented.len());
    for (i, s) in secret.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(!*s);
        diff |= std::hint::black_box(s ^ p);
    }
    diff == 0
}

/// Refuses (401) a request without `Authorization: Bearer <the token>`.
pub async fn require_token(State(token): State<Arc<Token>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    let ok = presented.is_some_and(|p| token.matches(p.trim_ascii()));
    if ok {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown peer".into());
    tracing::warn!(
        target: "quantune::audit",
        "{} {} by {peer} -> 401 ({})",
        req.method(),
        req.uri().path(),
        if presented.is_some() { "wrong token" } else { "no token" }
    );
    let error = if presented.is_some() {
        "wrong token: the `Authorization: Bearer` token sent is not the one in the daemon's tcp.token_file (check QUANTUNE_TOKEN or --token-file: it must hold that file's text)"
    } else {
        "no token: this listener needs `Authorization: Bearer <token>` with the token in the daemon's tcp.token_file (the CLI reads QUANTUNE_TOKEN or --token-file)"
    };
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({ "error": error })),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abcdef", b"abcde"));
        assert!(!constant_time_eq(b"abcdef", b"abcdefg"));
        assert!(!constant_time_eq(b"abcdef", b""));
        // A presented byte equal to the complement placeholder must not make a short value pass.
        assert!(!constant_time_eq(b"\x00", b""));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::load(&p).err().unwrap();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::load(&p).unwrap();
        assert!(t.matches(b"0123456789abcdef0123"));
        assert!(!t.matches(b"0123456789abcdef012"));
        std::fs::write(&p, "short\n").unwrap();
        let e = Token::load(&p).err().unwrap();
        assert!(e.contains("at least 16"), "{e}");
        let e = Token::load(&dir.path().join("missing")).err().unwrap();
        assert!(e.contains("missing"), "{e}");
    }
}
