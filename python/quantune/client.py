"""A client of the quantune daemon's HTTP/JSON API (docs/API.md), standard library only.

It talks HTTP/1.1 over the daemon's Unix socket, or over its TCP listener with a bearer token,
and finds the daemon the way the CLI does::

    from quantune import Client

    c = Client()                                   # $QUANTUNE_URL (+ $QUANTUNE_TOKEN), else
                                                   # $QUANTUNE_SOCKET, else /run/quantune/quantune.sock
    c = Client(socket="/tmp/q.sock")
    c = Client(url="http://127.0.0.1:7707", token="…")
    for s in c.studies():
        print(s["name"], s["state"])

Every method returns the API's JSON objects as dicts and lists, unchanged. A refused request
raises :class:`ApiError` carrying the HTTP status and the daemon's message.
"""

from __future__ import annotations

import http.client
import json
import os
import socket as _socket
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ["Client", "ApiError", "DaemonUnreachable", "DEFAULT_SOCKET", "ENDPOINTS"]

#: Where the daemon listens when nothing else is said (the CLI's default too).
DEFAULT_SOCKET = "/run/quantune/quantune.sock"

#: Every (method, path template) this client calls; checked against the daemon's OpenAPI
#: document (``GET /v1/openapi.json``) in CI, so the two cannot drift apart.
ENDPOINTS: Tuple[Tuple[str, str], ...] = (
    ("GET", "/v1/health"),
    ("GET", "/v1/status"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/studies"),
    ("POST", "/v1/studies"),
    ("GET", "/v1/studies/{name}"),
    ("GET", "/v1/studies/{name}/trials"),
    ("GET", "/v1/studies/{name}/trials/{n}"),
    ("GET", "/v1/studies/{name}/leaderboard"),
    ("POST", "/v1/studies/{name}/pause"),
    ("POST", "/v1/studies/{name}/resume"),
    ("POST", "/v1/studies/{name}/cancel"),
    ("POST", "/v1/studies/{name}/ask"),
    ("POST", "/v1/studies/{name}/trials/{n}/report"),
    ("POST", "/v1/studies/{name}/trials/{n}/tell"),
    ("POST", "/v1/studies/{name}/enqueue"),
    ("POST", "/v1/studies/{name}/import"),
    ("GET", "/v1/studies/{name}/export"),
    ("DELETE", "/v1/studies/{name}"),
    ("POST", "/v1/studies/{name}/extend"),
)


class ApiError(Exception):
    """The daemon refused a request: ``status`` is the HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{status} {message}")


class DaemonUnreachable(ConnectionError):
    """No daemon answered where the client was pointed (the message says where and what to set)."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix stream socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("quantune", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")


class Client:
    """One daemon, reached over its Unix socket or its TCP listener.

    With no arguments: ``$QUANTUNE_URL`` (with ``$QUANTUNE_TOKEN`` or the file named by
    ``$QUANTUNE_TOKEN_FILE``) when set, else ``$QUANTUNE_SOCKET``, else ``DEFAULT_SOCKET``.
    ``url`` must look like ``http://HOST:PORT`` (the daemon serves no TLS).
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        token_file: Optional[str] = None,
        timeout: float = 60.0,
    ) -> None:
        if socket is not None and url is not None:
            raise ValueError("give socket= or url=, not both")
        if socket is None and url is None:
            url = os.environ.get("QUANTUNE_URL") or None
            if url is None:
                socket = os.environ.get("QUANTUNE_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self.socket: Optional[str] = os.fspath(socket) if socket is not None else None
        self.url: Optional[str] = None
        self._host = ""
        self._port = 0
        self._token: Optional[str] = None
        if url is not None:
            self.url, self._host, self._port = _parse_url(url)
            if token is None:
                token = os.environ.get("QUANTUNE_TOKEN") or None
            if token is None:
                token_file = token_file or os.environ.get("QUANTUNE_TOKEN_FILE") or None
                if token_file:
                    try:
                        with open(token_file, encoding="utf-8") as f:
                            token = f.read().strip()
                    except OSError as e:
                        raise ValueError(f"cannot read the token file {token_file}: {e}") from None
            self._token = token

    def __repr__(self) -> str:
        where = self.url if self.url is not None else f"unix:{self.socket}"
        return f"Client({where})"

    # ---- transport ----

    def _connection(self) -> http.client.HTTPConnection:
        if self.socket is not None:
            return _UnixConnection(self.socket, self.timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def request_raw(
        self, method: str, path: str, body: Optional[Any] = None
    ) -> Tuple[int, str, bytes]:
        """Sends one request; returns (status, content type, body bytes) whatever the status."""
        headers = {"Accept": "application/json"}
        data: Optional[bytes] = None
        if body is not None:
            data = json.dumps(body, allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        conn = self._connection()
        try:
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise DaemonUnreachable(self._unreachable(e)) from None
            return resp.status, resp.getheader("Content-Type") or "", payload
        finally:
            conn.close()

    def _unreachable(self, e: BaseException) -> str:
        if self.socket is not None:
            return (
                f"cannot reach the quantune daemon at {self.socket}: {e}; is `quantune serve` "
                "running? (pass socket= or set QUANTUNE_SOCKET)"
            )
        return (
            f"cannot reach the quantune daemon at {self.url}: {e}; is its [tcp] listener on? "
            "(pass url= or set QUANTUNE_URL)"
        )

    def request(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        """Sends one request and returns its JSON reply; raises :class:`ApiError` on 4xx/5xx."""
        status, ctype, payload = self.request_raw(method, path, body)
        text = payload.decode("utf-8", errors="replace")
        is_json = ctype.split(";")[0].strip() == "application/json"
        if status >= 400:
            message = text.strip() or f"HTTP {status}"
            if is_json:
                try:
                    message = str(json.loads(text).get("error", message))
                except (ValueError, AttributeError):
                    pass
            raise ApiError(status, message, method, path)
        if is_json:
            return json.loads(text) if text else None
        return text

    # ---- daemon ----

    def health(self) -> Dict[str, Any]:
        """``GET /v1/health``: ``{"ok": true, "version": …}``."""
        return self.request("GET", "/v1/health")

    def status(self) -> Dict[str, Any]:
        """``GET /v1/status``: version, pid, slots, GPUs and every study."""
        return self.request("GET", "/v1/status")

    def openapi(self) -> Dict[str, Any]:
        """``GET /v1/openapi.json``: the API's OpenAPI 3.1 document."""
        return self.request("GET", "/v1/openapi.json")

    # ---- studies ----

    def studies(self) -> List[Dict[str, Any]]:
        """Every study object."""
        return self.request("GET", "/v1/studies")

    def submit(
        self, source: str, file: Optional[str] = None, base_dir: Optional[str] = None
    ) -> Dict[str, Any]:
        """Submits a study file's TOML text; returns the new study object.

        ``file`` names it in error messages; ``base_dir`` (absolute) is where relative paths in
        the study resolve.
        """
        body: Dict[str, Any] = {"source": source}
        if file is not None:
            body["file"] = file
        if base_dir is not None:
            body["base_dir"] = os.path.abspath(base_dir)
        return self.request("POST", "/v1/studies", body)

    def study(self, name: str) -> Dict[str, Any]:
        """One study object."""
        return self.request("GET", f"/v1/studies/{_quote(name)}")

    def trials(self, name: str) -> List[Dict[str, Any]]:
        """A study's trial objects by trial number."""
        return self.request("GET", f"/v1/studies/{_quote(name)}/trials")

    def trial(self, name: str, number: int) -> Dict[str, Any]:
        """``{"trial": trial object, "reports": [{"step", "values", "at"}]}``."""
        return self.request("GET", f"/v1/studies/{_quote(name)}/trials/{int(number)}")

    def leaderboard(self, name: str, top: Optional[int] = None) -> List[Dict[str, Any]]:
        """Leaderboard rows (trial object + ``rank``, ``feasible``, ``best``) in display order."""
        q = f"?top={int(top)}" if top is not None else ""
        return self.request("GET", f"/v1/studies/{_quote(name)}/leaderboard{q}")

    def pause(self, name: str) -> Dict[str, Any]:
        """No new trials; running ones go on. Returns the study object."""
        return self.request("POST", f"/v1/studies/{_quote(name)}/pause")

    def resume(self, name: str) -> Dict[str, Any]:
        """Undoes :meth:`pause`. Returns the study object."""
        return self.request("POST", f"/v1/studies/{_quote(name)}/resume")

    def cancel(self, name: str) -> Dict[str, Any]:
        """Cancels the study (queued trials cancelled, running ones stopped)."""
        return self.request("POST", f"/v1/studies/{_quote(name)}/cancel")

    def delete(self, name: str) -> Dict[str, Any]:
        """Deletes the study and every trial of it (running ones are stopped first).

        Returns ``{"name": …, "trials": N}``; there is no undo (export it first to keep it).
        """
        return self.request("DELETE", f"/v1/studies/{_quote(name)}")

    def extend(
        self,
        name: str,
        max_trials: Optional[int] = None,
        max_wall: Optional[str] = None,
        max_gpu_hours: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Raises the study's budgets (a completed study runs again). Returns the study object."""
        body = {
            k: v
            for k, v in (
                ("max_trials", max_trials),
                ("max_wall", max_wall),
                ("max_gpu_hours", max_gpu_hours),
            )
            if v is not None
        }
        return self.request("POST", f"/v1/studies/{_quote(name)}/extend", body)

    def export(self, name: str) -> str:
        """The study as JSON lines (the study line, then one line per trial)."""
        return self.request("GET", f"/v1/studies/{_quote(name)}/export")

    # ---- ask / tell ----

    def ask(self, name: str) -> Dict[str, Any]:
        """Hands out the next trial of an external study: ``{"trial": N, "params": {…}}``."""
        return self.request("POST", f"/v1/studies/{_quote(name)}/ask")

    def report(self, name: str, number: int, step: int, metrics: Mapping[str, float]) -> bool:
        """An intermediate report; returns True when the daemon pruned the trial."""
        reply = self.request(
            "POST",
            f"/v1/studies/{_quote(name)}/trials/{int(number)}/report",
            {"step": int(step), "metrics": {k: float(v) for k, v in metrics.items()}},
        )
        return bool(reply["prune"])

    def tell(
        self,
        name: str,
        number: int,
        metrics: Optional[Mapping[str, float]] = None,
        failed: Optional[str] = None,
        infeasible: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Finishes a trial with exactly one of final ``metrics``, ``failed`` or ``infeasible``."""
        given = [x is not None for x in (metrics, failed, infeasible)]
        if sum(given) != 1:
            raise ValueError("tell needs exactly one of metrics=, failed= or infeasible=")
        body: Dict[str, Any]
        if metrics is not None:
            body = {"metrics": {k: float(v) for k, v in metrics.items()}}
        elif failed is not None:
            body = {"failed": str(failed)}
        else:
            body = {"infeasible": str(infeasible)}
        return self.request(
            "POST", f"/v1/studies/{_quote(name)}/trials/{int(number)}/tell", body
        )

    def enqueue(self, name: str, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Queues a configuration to run (or be handed out by ``ask``) before the strategy's next."""
        return self.request(
            "POST", f"/v1/studies/{_quote(name)}/enqueue", {"params": dict(params)}
        )

    def import_results(self, name: str, results: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        """Stores finished results run elsewhere (``{"params", "metrics", "info", "source"}``)."""
        return self.request(
            "POST", f"/v1/studies/{_quote(name)}/import", {"results": [dict(r) for r in results]}
        )


def _parse_url(url: str) -> Tuple[str, str, int]:
    if not url.startswith("http://"):
        raise ValueError(
            f'url must look like http://HOST:PORT (got "{url}"); https is not served, put a TLS '
            "proxy in front for remote use"
        )
    rest = url[len("http://") :].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or "/" in rest or not port.isdigit():
        raise ValueError(f'url must look like http://HOST:PORT (got "{url}")')
    return f"http://{rest}", host.strip("[]"), int(port)
