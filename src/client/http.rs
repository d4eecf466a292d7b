//! The CLI's client for the daemon API: one HTTP/1 request per call over the Unix socket, or
//! over TCP with a bearer token when the daemon's `[tcp]` listener is used.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A client bound to one daemon.
pub struct Client {
    /// Where the daemon listens.
    endpoint: Endpoint,
}

/// How to reach the daemon.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// Its Unix socket.
    Unix(PathBuf),
    /// Its TCP listener (`host:port`) and the bearer token to present.
    Tcp {
        /// `host:port`.
        addr: String,
        /// The token, if any (the daemon refuses requests without one).
        token: Option<String>,
    },
}

impl Endpoint {
    /// A TCP endpoint from a `http://HOST:PORT` URL.
    pub fn from_url(url: &str, token: Option<String>) -> Result<Endpoint, ClientError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            ClientError(format!(
                "--url must look like http://HOST:PORT (got \"{url}\"); https is not served, put a TLS proxy in front for remote use"
            ))
        })?;
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') || !addr.contains(':') {
            return Err(ClientError(format!(
                "--url must look like http://HOST:PORT (got \"{url}\")"
            )));
        }
        Ok(Endpoint::Tcp {
            addr: addr.to_string(),
            token,
        })
    }
}

/// A failed call, already worded for the user.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Client {
        Client::to(Endpoint::Unix(socket.to_path_buf()))
    }

    /// A client for the daemon at `endpoint`.
    pub fn to(endpoint: Endpoint) -> Client {
        Client { endpoint }
    }

    /// Where this client sends its requests.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends a request; returns the reply's status, content type and body, whatever the status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), ClientError> {
        let mut sender = match &self.endpoint {
            Endpoint::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
                    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        "; the socket is for the daemon's socket_group: ask an admin to add you to it (then log in again)"
                    } else {
                        "; is `quantune serve` running? (set --socket or QUANTUNE_SOCKET)"
                    };
                    ClientError(format!(
                        "cannot reach the quantune daemon at {}: {e}{hint}",
                        socket.display()
                    ))
                })?;
                handshake(stream).await?
            }
            Endpoint::Tcp { addr, .. } => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
                    ClientError(format!(
                        "cannot reach the quantune daemon at http://{addr}: {e}; is its [tcp] listener on? (set --url or QUANTUNE_URL)"
                    ))
                })?;
                let _ = stream.set_nodelay(true);
                handshake(stream).await?
            }
        };
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://quantune{path}"))
            .header("host", "quantune");
        if let Endpoint::Tcp {
            token: Some(token), ..
        } = &self.endpoint
        {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if has_body {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError(format!("bad request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError(format!("the daemon did not answer: {e}")))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError(format!("the daemon's reply broke off: {e}")))?
            .to_bytes()
            .to_vec();
        Ok((status, content_type, bytes))
    }

    /// Sends a request; returns the body of a 2xx reply, else the daemon's error message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let (status, _, bytes) = self.send(method, path, body).await?;
        if status.is_success() {
            return Ok(bytes);
        }
        let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        Err(ClientError(match (status, &self.endpoint) {
            (StatusCode::INTERNAL_SERVER_ERROR, _) => format!("daemon error: {msg}"),
            (StatusCode::UNAUTHORIZED, Endpoint::Tcp { addr, .. }) => {
                format!("the daemon at http://{addr} refused the request: {msg}")
            }
            _ => msg,
        }))
    }

    /// `call` + JSON decoding of the reply.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError(format!("unexpected reply from the daemon: {e}")))
    }
}

/// The HTTP/1 handshake over any stream; the connection is driven by a task of its own.
async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError(format!("cannot talk to the daemon: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Percent-encodes a path segment (study names are plain, but user input may not be).
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_the_tcp_listener() {
        match Endpoint::from_url("http://127.0.0.1:7707/", Some("t".into())).unwrap() {
            Endpoint::Tcp { addr, token } => {
                assert_eq!(addr, "127.0.0.1:7707");
                assert_eq!(token.as_deref(), Some("t"));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "https://127.0.0.1:7707",
            "127.0.0.1:7707",
            "http://",
            "http://host",
            "http://h:1/v1",
        ] {
            let e = Endpoint::from_url(bad, None).unwrap_err().0;
            assert!(e.contains("http://HOST:PORT"), "{bad}: {e}");
        }
    }
}
