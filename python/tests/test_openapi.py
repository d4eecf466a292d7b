"""The Python client and the daemon's OpenAPI document (GET /v1/openapi.json) agree.

* Every endpoint the client calls (``quantune.client.ENDPOINTS``) is in the document, and every
  endpoint in the document exists on the server.
* Every reply the client got while driving a study is valid for the document's schema of that
  endpoint, and every field the client (or a user of its replies) read is declared there.
"""

from __future__ import annotations

import re
import unittest
from typing import Any, Dict, List, Optional, Tuple

import quantune
from quantune import ApiError, Client, Study
from quantune.client import ENDPOINTS

from daemon import Daemon

D: Daemon
DOC: Dict[str, Any]


def setUpModule() -> None:
    global D, DOC
    D = Daemon().start()
    DOC = Client(socket=D.socket).openapi()


def tearDownModule() -> None:
    D.stop()


def template(path: str) -> Optional[Tuple[str, Dict[str, str]]]:
    """The document's path template that ``path`` matches, with the values of its parameters."""
    path = path.split("?")[0]
    for t in DOC["paths"]:
        rx = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(t)) + "$"
        m = re.match(rx, path)
        if m:
            return t, m.groupdict()
    return None


def resolve(schema: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def alternatives(schema: Dict[str, Any]) -> List[Dict[str, Any]]:
    schema = resolve(schema)
    alts = schema.get("anyOf") or schema.get("oneOf")
    if alts:
        return [a for s in alts for a in alternatives(s)]
    return [schema]


def types_of(schema: Dict[str, Any]) -> List[str]:
    t = schema.get("type")
    return t if isinstance(t, list) else [t] if t else []


def validate(value: Any, schema: Dict[str, Any], where: str) -> List[str]:
    """Problems of ``value`` against ``schema`` (the subset of JSON Schema the document uses)."""
    if schema is True or schema == {}:
        return []
    best: Optional[List[str]] = None
    for s in alternatives(schema):
        problems = _validate_one(value, s, where)
        if not problems:
            return []
        best = problems if best is None or len(problems) < len(best) else best
    return best or [f"{where}: matches no alternative"]


def _validate_one(value: Any, s: Dict[str, Any], where: str) -> List[str]:
    ts = types_of(s)
    kind = {
        bool: "boolean", int: "integer", float: "number", str: "string",
        type(None): "null", list: "array", dict: "object",
    }[type(value)]
    ok = not ts or kind in ts or (kind == "integer" and "number" in ts)
    if not ok:
        return [f"{where}: {kind} where the document says {'/'.join(ts)}"]
    out: List[str] = []
    if kind == "object":
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in value:
                out.append(f"{where}: required field {r!r} missing")
        extra = s.get("additionalProperties", True if not props else None)
        for k, v in value.items():
            if k in props:
                out += validate(v, props[k], f"{where}.{k}")
            elif isinstance(extra, dict):
                out += validate(v, extra, f"{where}.{k}")
            elif extra is not True:
                out.append(f"{where}: field {k!r} is not in the document")
    if kind == "array" and "items" in s:
        for i, v in enumerate(value):
            out += validate(v, s["items"], f"{where}[{i}]")
    return out


def reply_schema(method: str, path: str) -> Dict[str, Any]:
    t, _ = template(path) or (None, None)
    assert t is not None, f"{method} {path} is not in the document"
    op = DOC["paths"][t][method.lower()]
    for status, r in op["responses"].items():
        if status.startswith("2"):
            return r.get("content", {}).get("application/json", {}).get("schema", {})
    raise AssertionError(f"{method} {t} has no 2xx reply in the document")


class Tracked(dict):
    """A reply object that records which fields were read (path from the reply's root)."""

    def __init__(self, value: Dict[str, Any], path: Tuple[str, ...], log: set) -> None:
        super().__init__({k: wrap(v, path + (k,), log) for k, v in value.items()})
        self._path, self._log = path, log

    def __getitem__(self, k: str) -> Any:
        self._log.add(self._path + (k,))
        return super().__getitem__(k)

    def get(self, k: str, default: Any = None) -> Any:
        self._log.add(self._path + (k,))
        return super().get(k, default)


def wrap(v: Any, path: Tuple[str, ...], log: set) -> Any:
    if isinstance(v, dict):
        return Tracked(v, path, log)
    if isinstance(v, list):
        return [wrap(x, path + ("[]",), log) for x in v]
    return v


def declared(schema: Dict[str, Any], path: Tuple[str, ...]) -> bool:
    """Whether the field at ``path`` is declared under ``schema``."""
    if not path:
        return True
    for s in alternatives(schema):
        if path[0] == "[]":
            if "items" in s and declared(s["items"], path[1:]):
                return True
            continue
        props = s.get("properties", {})
        if path[0] in props and declared(props[path[0]], path[1:]):
            return True
        extra = s.get("additionalProperties")
        if isinstance(extra, dict) and declared(extra, path[1:]):
            return True
    return False


class RecordingClient(Client):
    """A client that keeps every JSON reply and hands out tracked copies."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.seen: List[Tuple[str, str, Any, set]] = []

    def request(self, method: str, path: str, body: Optional[Any] = None) -> Any:
        reply = super().request(method, path, body)
        if isinstance(reply, (dict, list)):
            log: set = set()
            self.seen.append((method, path, reply, log))
            return wrap(reply, (), log)
        return reply


class OpenApiTest(unittest.TestCase):
    def test_document_is_openapi_3_1(self) -> None:
        self.assertEqual(DOC["openapi"], "3.1.0")
        self.assertEqual(DOC["info"]["version"], Client(socket=D.socket).health()["version"])

    def test_every_endpoint_the_client_calls_is_documented(self) -> None:
        for method, path in ENDPOINTS:
            self.assertIn(path, DOC["paths"], f"{method} {path}")
            self.assertIn(method.lower(), DOC["paths"][path], f"{method} {path}")

    def test_every_documented_endpoint_exists(self) -> None:
        c = Client(socket=D.socket)
        for path, item in DOC["paths"].items():
            concrete = path.replace("{name}", "no-such-study").replace("{n}", "0")
            for method in item:
                status, _, body = c.request_raw(method.upper(), concrete)
                text = body.decode(errors="replace")
                self.assertNotIn("no such API endpoint", text, f"{method} {path}")
                self.assertNotEqual(status, 405, f"{method} {path}: {text}")

    def test_replies_match_the_document_and_the_fields_read_are_declared(self) -> None:
        c = RecordingClient(socket=D.socket)
        s = Study.create(
            "openapi-check",
            space={"x": {"type": "float", "low": 0.0, "high": 1.0},
                   "q": {"type": "categorical", "choices": ["a", "b"]}},
            objectives={"y": "minimize"},
            constraints={"y": {"max": 0.9}},
            pruner={"constraint_grace": 0.05},
            strategy={"kind": "random"},
            max_trials=5,
            client=c,
        )
        t = s.ask()
        t.report(1, y=0.5)
        t.tell(y=0.5)
        t = s.ask()
        self.assertTrue(t.report(1, y=5.0))  # pruned by the quality gate
        s.enqueue({"x": 0.25, "q": "b"})
        s.optimize(lambda tr: tr["x"], n_trials=2)
        with self.assertRaises(ApiError):
            s.ask().tell(z=1.0)  # missing objective: refused, stays running
        s.cancel()
        # What a user reads off the replies counts too.
        for row in s.leaderboard():
            _ = (row["rank"], row["feasible"], row["best"], row["params"]["x"], row["metrics"]["y"])
        for tr in s.trials():
            _ = (tr["trial"], tr["state"], tr.get("reason"), tr["params"], tr.get("duration_s"))
        _ = s.trial(0)["reports"][0]["values"]["y"]
        _ = (s.best_params, s.best_value, s.summary["counts"], s.summary["budget"]["wall_s"])
        st = c.status()
        _ = (st["version"], st["studies"][0]["name"], st["slots"], st["gpus"])
        self.assertGreater(len(c.seen), 10)
        asks = [log for m, p, _, log in c.seen if p.endswith("/ask")]
        self.assertTrue(asks and all(("params",) in log and ("trial",) in log for log in asks))
        problems: List[str] = []
        for method, path, reply, log in c.seen:
            schema = reply_schema(method, path)
            problems += validate(reply, schema, f"{method} {path}")
            for field in sorted(log):
                if not declared(schema, field):
                    problems.append(f"{method} {path}: read {'.'.join(field)}, not in the document")
        self.assertEqual(problems, [], "\n".join(problems))
        methods = {(m, (template(p) or ("?",))[0]) for m, p, _, _ in c.seen}
        for needed in [("POST", "/v1/studies/{name}/ask"), ("POST", "/v1/studies/{name}/trials/{n}/report"),
                       ("POST", "/v1/studies/{name}/trials/{n}/tell"), ("GET", "/v1/studies/{name}/leaderboard"),
                       ("POST", "/v1/studies/{name}/enqueue"), ("GET", "/v1/studies/{name}/trials/{n}")]:
            self.assertIn(needed, methods)

    def test_the_validator_catches_a_mismatch(self) -> None:
        schema = reply_schema("POST", "/v1/studies/x/ask")
        self.assertEqual(validate({"trial": 1, "params": {"x": 0.5}}, schema, "ask"), [])
        self.assertTrue(validate({"trial": "one", "params": {}}, schema, "ask"))
        self.assertTrue(validate({"params": {}}, schema, "ask"))
        self.assertFalse(declared(schema, ("no_such_field",)))
        self.assertTrue(declared(schema, ("params", "anything")))


if __name__ == "__main__":
    unittest.main()
