"""quantune's trial protocol from Python (docs/TRIALS.md), with nothing but the standard library.

A trial reads its parameters and appends JSON lines to ``$QUANTUNE_METRICS_FILE``::

    import quantune_trial as qt

    p = qt.params()                              # {"learning_rate": 0.0003, "batch_size": 16, ...}
    for step in range(1, steps + 1):
        ...
        if step % 100 == 0:
            qt.report(step, eval_loss=loss)      # {"step": 100, "eval_loss": 2.31}
    qt.final(latency_ms=13.5, throughput_tok_s=30.1, eval_loss_delta=0.02, gpu="H100")
    # or: qt.infeasible("out of memory at batch_size = 64")

Outside quantune (no ``$QUANTUNE_PARAMS``), ``params(defaults)`` returns the defaults, and the
lines go to stdout, so the same script runs by hand.
"""

import json
import math
import os
import sys

__all__ = ["params", "trial", "study", "report", "final", "infeasible"]


def params(defaults=None):
    """The trial's parameters (``$QUANTUNE_PARAMS``) over ``defaults``."""
    out = dict(defaults or {})
    raw = os.environ.get("QUANTUNE_PARAMS")
    if raw:
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("QUANTUNE_PARAMS is not a JSON object")
        out.update(value)
    return out


def trial():
    """The trial number, or None outside quantune."""
    t = os.environ.get("QUANTUNE_TRIAL")
    return int(t) if t else None


def study():
    """The study name, or None outside quantune."""
    return os.environ.get("QUANTUNE_STUDY")


def _clean(values):
    out = {}
    for k, v in values.items():
        if k in ("step", "infeasible"):
            raise ValueError(f"{k!r} is reserved by the trial protocol")
        if isinstance(v, bool) or v is None:
            raise ValueError(f"{k} = {v!r}: write a number or a string")
        if isinstance(v, (int, float)):
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"{k} = {v}: metrics must be finite")
        elif not isinstance(v, str):
            v = str(v)
        out[k] = v
    return out


def _write(obj):
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


def report(step, **values):
    """An intermediate report (for pruning and learning curves): numbers only."""
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative integer (got {step!r})")
    clean = _clean(values)
    if any(isinstance(v, str) for v in clean.values()):
        raise ValueError("intermediate reports hold numbers only")
    _write({"step": step, **clean})


def final(**metrics):
    """The final result: numbers are metrics, strings are descriptions (GPU, host, version)."""
    _write(_clean(metrics))


def infeasible(reason):
    """Marks this configuration infeasible (quantune does not retry it)."""
    _write({"infeasible": str(reason)})
