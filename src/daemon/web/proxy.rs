//! `quantune web`: the loopback forwarder a browser talks to. It forwards GET requests for
//! `/ui/…`, and nothing else, to the daemon's socket (or its TCP listener with the token), for
//! requests that carry this start's random token and name the forwarder's own address as
//! `Host`; see `docs/WEB.md`.

use super::redirect;
use crate::client::http::{Client, Endpoint};
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

/// The name of the cookie that carries the forwarder's token once the browser has shown it.
const TOKEN_COOKIE: &str = "quantune_web_token";

/// Who may use one `quantune web` forwarder: whoever shows its token (from the URL it printed,
/// or the cookie set from it), asking for it by its own address.
#[derive(Clone)]
struct Guard {
    /// The per-start random token (32 hex digits).
    token: Arc<str>,
    /// The `Host` values a request may carry: the bound address, and `localhost` with its port.
    hosts: Arc<[String]>,
}

impl Guard {
    /// A fresh random token for a forwarder bound to `local`.
    fn new(local: std::net::SocketAddr) -> Guard {
        let bytes: [u8; 16] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let port = local.port();
        let hosts = vec![local.to_string(), format!("localhost:{port}")];
        Guard {
            token: token.into(),
            hosts: hosts.into(),
        }
    }

    /// Why `req` is refused, if it is: a foreign `Host` (DNS rebinding), or no valid token.
    /// `Ok(true)` when the token came in the query (the answer then sets the cookie).
    fn check(&self, req: &Request) -> Result<bool, Box<Response>> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(Box::new((
                StatusCode::FORBIDDEN,
                format!(
                    "Host \"{host}\" is not this forwarder's address; open http://{}/ui/ as `quantune web` printed it\n",
                    self.hosts[0]
                ),
            )
                .into_response()));
        }
        let from_query = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
        if from_query.is_some_and(|t| same(t, &self.token)) {
            return Ok(true);
        }
        let from_cookie = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
            .any(|t| same(t, &self.token));
        if from_cookie {
            return Ok(false);
        }
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "this page needs the token in the URL that `quantune web` printed (…/ui/?token=…)\n",
            )
                .into_response(),
        ))
    }
}

/// Constant-time comparison of two tokens.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `path_and_query` without its `token=` parameter.
fn without_token(path_and_query: &str) -> String {
    match path_and_query.split_once('?') {
        None => path_and_query.to_string(),
        Some((path, query)) => {
            let rest: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
                .collect();
            if rest.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", rest.join("&"))
            }
        }
    }
}

/// `quantune web`: serves the daemon's page on a loopback address for a browser, forwarding
/// GET requests under `/ui/` to the daemon (its socket, or its TCP listener with the token
/// when `--url` is given), to requests that carry this start's random token and name this
/// address as their `Host`. Prints the URL (with the token), runs until Ctrl-C.
pub async fn proxy(endpoint: Endpoint, listen: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let stop = crate::signal::shutdown_signal();
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: not an IP address and port"))?;
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "--listen {listen}: not a loopback address; `quantune web` serves 127.0.0.1 or ::1 only (from another machine, use ssh -L, see docs/WEB.md)"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--listen {listen}: cannot listen there"))?;
    let local = listener.local_addr()?;
    // Check the daemon serves the page before saying where it is.
    let client = Client::to(endpoint.clone());
    let (status, _, _) = client
        .send(hyper::Method::GET, "/ui/", None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if status == StatusCode::NOT_FOUND {
        anyhow::bail!(
            "the daemon does not serve the web page: set `web = true` in its config and restart it"
        );
    }
    let guard = Guard::new(local);
    // Into a pipe that closes (`quantune web | head -1`), the page goes on being served.
    let _ = crate::client::output::write_stdout(&format!(
        "serving the quantune web page at http://{local}/ui/?token={} (Ctrl-C stops)\n",
        guard.token
    ));
    let app =
        Router::new().fallback(move |req: Request| forward(endpoint.clone(), guard.clone(), req));
    let (quit_tx, quit_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = quit_tx.send(true);
    });
    crate::daemon::listen::serve(
        listener,
        app,
        crate::daemon::listen::HttpLimits {
            max_connections: 256,
            ..Default::default()
        },
        quit_rx,
        "web",
    )
    .await;
    Ok(())
}

async fn forward(endpoint: Endpoint, guard: Guard, req: Request) -> Response {
    let with_query = match guard.check(&req) {
        Ok(q) => q,
        Err(refused) => return *refused,
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| without_token(p.as_str()))
        .unwrap_or_else(|| "/".into());
    let method = req.method().clone();
    drop(req);
    let mut resp = answer(endpoint, method, &path).await;
    if with_query {
        let cookie = format!(
            "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            guard.token
        );
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn answer(endpoint: Endpoint, method: axum::http::Method, path: &str) -> Response {
    if method != axum::http::Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "the web page is read-only\n",
        )
            .into_response();
    }
    if path == "/" {
        return redirect("/ui/");
    }
    if !(path == "/ui" || path.starts_with("/ui/") || path.starts_with("/ui?")) {
        return (
            StatusCode::NOT_FOUND,
            "only the web page (/ui/) is served here\n",
        )
            .into_response();
    }
    match Client::to(endpoint)
        .send(hyper::Method::GET, path, None)
        .await
    {
        Ok((status, content_type, body)) => {
            let mut resp = (status, body).into_response();
            if let Some(ct) = content_type.and_then(|c| c.parse().ok()) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            if status == StatusCode::FOUND {
                resp.headers_mut()
                    .insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_forwarded_path() {
        assert_eq!(without_token("/ui/?token=ab"), "/ui/");
        assert_eq!(without_token("/ui/x?a=1&token=ab&b=2"), "/ui/x?a=1&b=2");
        assert_eq!(without_token("/ui/x"), "/ui/x");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
