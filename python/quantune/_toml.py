"""A small TOML writer for study definitions (nested dicts of strings, numbers, booleans, lists).

The standard library reads TOML (``tomllib``, Python 3.11+) but does not write it; a study
definition needs only tables, arrays of tables, inline tables and scalar arrays.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, List, Mapping

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    if not isinstance(k, str):
        raise TypeError(f"TOML keys must be strings (got {k!r})")
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{where} = {v}: TOML study values must be finite")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(x, f'{where}.{k}')}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"{where} = {v!r}: write a string, number, boolean, list or table")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)


def dumps(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML text: scalars first, then ``[tables]`` and ``[[arrays of tables]]``."""
    out: List[str] = []
    _table(doc, [], out)
    return "\n".join(out).strip() + "\n"


def _table(t: Mapping[str, Any], path: List[str], out: List[str]) -> None:
    name = ".".join(_key(p) for p in path)
    scalars = [(k, v) for k, v in t.items() if not isinstance(v, Mapping) and not _is_table_array(v)]
    if path and (scalars or not any(isinstance(v, Mapping) for v in t.values())):
        out.append(f"\n[{name}]")
    for k, v in scalars:
        out.append(f"{_key(k)} = {_value(v, '.'.join(path + [k]))}")
    for k, v in t.items():
        if isinstance(v, Mapping):
            _table(v, path + [k], out)
        elif _is_table_array(v):
            for item in v:
                out.append(f"\n[[{'.'.join(_key(p) for p in path + [k])}]]")
                for ik, iv in item.items():
                    out.append(f"{_key(ik)} = {_value(iv, f'{k}.{ik}')}")
