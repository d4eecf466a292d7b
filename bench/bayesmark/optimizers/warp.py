"""Bayesmark's `api_config` as plain box bounds, shared by the wrappers in this folder.

Bayesmark describes each variable by type (`real`, `int`, `bool`, `cat`), range and warp
(`linear`, `log`, `logit`, `bilog`). Every wrapper here hands its optimizer the same thing: log
reals and log ints as log-scaled ranges (each optimizer's own log support), logit and bilog reals
as a linear range in the warped coordinate (`to_value` maps back), booleans and categoricals
as categoricals.
"""

import math


def logit(x):
    return math.log(x / (1.0 - x))


def expit(z):
    return 1.0 / (1.0 + math.exp(-z))


def bilog(x):
    return math.copysign(math.log1p(abs(x)), x)


def biexp(z):
    return math.copysign(math.expm1(abs(z)), z)


def variables(api_config):
    """`[(name, kind, spec)]` with kind `float` (spec `(low, high, log)`), `int` (spec `(low,
    high, log)`) or `cat` (spec: list of values), in sorted name order."""
    out = []
    for name in sorted(api_config):
        conf = api_config[name]
        typ = conf["type"]
        warp = conf.get("space", "linear")
        if typ == "real":
            lo, hi = conf["range"]
            if warp == "logit":
                out.append((name, "float", (logit(lo), logit(hi), False)))
            elif warp == "bilog":
                out.append((name, "float", (bilog(lo), bilog(hi), False)))
            else:
                out.append((name, "float", (float(lo), float(hi), warp == "log")))
        elif typ == "int":
            lo, hi = conf["range"]
            out.append((name, "int", (int(lo), int(hi), warp == "log")))
        elif typ == "bool":
            out.append((name, "cat", [False, True]))
        elif typ == "cat":
            out.append((name, "cat", list(conf["values"])))
        else:
            raise ValueError(f"bayesmark variable {name}: unknown type {typ!r}")
    return out


def to_value(api_config, name, v):
    """An optimizer's value of `name` back in bayesmark's own coordinate, inside its range."""
    conf = api_config[name]
    typ = conf["type"]
    warp = conf.get("space", "linear")
    if typ == "real":
        lo, hi = conf["range"]
        x = float(v)
        if warp == "logit":
            x = expit(x)
        elif warp == "bilog":
            x = biexp(x)
        return min(max(x, lo), hi)
    if typ == "int":
        lo, hi = conf["range"]
        return int(min(max(int(round(float(v))), lo), hi))
    if typ == "bool":
        return bool(v) if not isinstance(v, str) else v.lower() == "true"
    return v
