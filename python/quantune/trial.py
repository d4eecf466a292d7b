"""The trial protocol (docs/TRIALS.md): what a trial process reads and writes, standard library only.

A ``workload = "command"`` trial reads its parameters from ``$QUANTUNE_PARAMS`` and appends
JSON lines to ``$QUANTUNE_METRICS_FILE``::

    from quantune import trial

    p = trial.params({"learning_rate": 3e-4})   # the trial's values over these defaults
    for step in range(1, steps + 1):
        ...
        if step % 100 == 0:
            trial.report(step, eval_loss=loss)  # {"step": 100, "eval_loss": 2.31}
            if trial.should_prune():            # the daemon sent SIGTERM: stop cleanly
                break
    trial.final(latency_ms=13.5, throughput_tok_s=30.1, eval_loss_delta=0.02, gpu="H100")
    # or: trial.infeasible("out of memory at batch_size = 64")

Outside quantune (no ``$QUANTUNE_PARAMS``), ``params(defaults)`` returns the defaults and the
lines go to stdout, so the same script runs by hand.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from typing import Any, Dict, Mapping, Optional, Union

__all__ = [
    "params",
    "trial",
    "study",
    "attempt",
    "report",
    "final",
    "infeasible",
    "should_prune",
    "inside_quantune",
]

#: A parameter value as quantune hands it out.
Value = Union[float, int, str, bool]

_RESERVED = ("step", "infeasible")
_stop_requested = False
_handler_installed = False


def params(defaults: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The trial's parameters (``$QUANTUNE_PARAMS``) laid over ``defaults``.

    Raises ``ValueError`` when ``$QUANTUNE_PARAMS`` is set but is not a JSON object.
    """
    out: Dict[str, Any] = dict(defaults or {})
    raw = os.environ.get("QUANTUNE_PARAMS")
    if raw:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"QUANTUNE_PARAMS is not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise ValueError("QUANTUNE_PARAMS is not a JSON object")
        out.update(value)
    return out


def trial() -> Optional[int]:
    """The trial number (``$QUANTUNE_TRIAL``), or ``None`` outside quantune."""
    t = os.environ.get("QUANTUNE_TRIAL")
    return int(t) if t else None


def study() -> Optional[str]:
    """The study name (``$QUANTUNE_STUDY``), or ``None`` outside quantune."""
    return os.environ.get("QUANTUNE_STUDY")


def attempt() -> Optional[int]:
    """The attempt number from 1 (``$QUANTUNE_ATTEMPT``), or ``None`` outside quantune."""
    a = os.environ.get("QUANTUNE_ATTEMPT")
    return int(a) if a else None


def inside_quantune() -> bool:
    """Whether this process runs as a quantune trial (``$QUANTUNE_METRICS_FILE`` is set)."""
    return bool(os.environ.get("QUANTUNE_METRICS_FILE"))


def _clean(values: Mapping[str, Any]) -> Dict[str, Union[float, str]]:
    out: Dict[str, Union[float, str]] = {}
    for k, v in values.items():
        if k in _RESERVED:
            raise ValueError(f"{k!r} is reserved by the trial protocol")
        if isinstance(v, bool) or v is None:
            raise ValueError(f"{k} = {v!r}: write a number or a string")
        if isinstance(v, (int, float)):
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"{k} = {v}: metrics must be finite")
        elif not isinstance(v, str):
            # numpy scalars, torch 0-d tensors: anything float() takes is a number.
            try:
                f = float(v)
            except (TypeError, ValueError):
                v = str(v)
            else:
                if not math.isfinite(f):
                    raise ValueError(f"{k} = {f}: metrics must be finite")
                v = f
        out[k] = v
    return out


def _write(obj: Mapping[str, Any]) -> None:
    line = json.dumps(obj, allow_nan=False) + "\n"
    path = os.environ.get("QUANTUNE_METRICS_FILE")
    if path:
        # One write per line, appended: quantune reads the file while the trial runs.
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
    else:
        sys.stdout.write(line)
        sys.stdout.flush()


def report(step: int, **values: float) -> None:
    """An intermediate report at ``step`` (for pruning and learning curves): numbers only."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative integer (got {step!r})")
    clean = _clean(values)
    if not clean:
        raise ValueError("a report needs at least one metric, e.g. report(step, eval_loss=2.3)")
    if any(isinstance(v, str) for v in clean.values()):
        raise ValueError("intermediate reports hold numbers only")
    _write({"step": step, **clean})


def final(**metrics: Union[float, str]) -> None:
    """The final result: numbers are metrics, strings are descriptions (GPU, host, version).

    The last final line a trial writes wins.
    """
    if not metrics:
        raise ValueError("final() needs at least one metric")
    _write(_clean(metrics))


def infeasible(reason: str) -> None:
    """Marks this configuration infeasible: quantune records why and does not retry it."""
    _write({"infeasible": str(reason)})


def _on_sigterm(signum: int, frame: Any) -> None:
    global _stop_requested
    if _stop_requested:
        # A second SIGTERM: the trial did not stop in time; go now.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _stop_requested = True


def should_prune() -> bool:
    """Whether the daemon asked this trial to stop (pruned, cancelled or timed out).

    The daemon stops a trial with SIGTERM, then SIGKILL 10 s later (docs/TRIALS.md). The first
    call installs a SIGTERM handler (only where none is installed yet, and only in the main
    thread) that records the request instead of ending the process at once, so a training loop
    that calls this after each report can return cleanly; a second SIGTERM ends the process.
    Scripts that never call it keep the default behaviour. Outside quantune it is always False.
    """
    global _handler_installed
    if not _handler_installed and inside_quantune():
        _handler_installed = True
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:
            # Not the main thread: signals cannot be handled here; nothing is recorded.
            pass
    return _stop_requested
