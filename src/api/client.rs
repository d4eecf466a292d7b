//! The CLI's client for the daemon API: one HTTP/1 request per call over the Unix socket.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A client bound to one socket path.
pub struct Client {
    /// The daemon's socket.
    socket: PathBuf,
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
        Client {
            socket: socket.to_path_buf(),
        }
    }

    /// Sends a request; returns the reply's status, content type and body, whatever the status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| {
            ClientError(format!(
                "cannot reach the quantune daemon at {}: {e}; is `quantune serve` running? (set --socket or QUANTUNE_SOCKET)",
                self.socket.display()
            ))
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError(format!("cannot talk to the daemon: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://quantune{path}"))
            .header("host", "quantune");
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
        Err(ClientError(
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                format!("daemon error: {msg}")
            } else {
                msg
            },
        ))
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
