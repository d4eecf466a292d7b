"""quantune as a Bayesmark optimizer, through its real command line.

Each experiment (one process, started by `bayesmark-exp`'s launcher) starts its own `quantune
serve` in a temporary directory, submits one `workload = "external"` study with
`budget.parallel` = the batch size, and for each batch runs `quantune ask` n_suggestions times
before any `quantune tell`: the strategy sees the batch's earlier members as pending trials, as
it would with 8 GPUs busy. Nothing runs in-process. The binary is `$QUANTUNE_BIN`, else the
repository's `target/release/quantune`.
"""

import atexit
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import warp  # noqa: E402

import numpy as np  # noqa: E402

from bayesmark.abstract_optimizer import AbstractOptimizer  # noqa: E402
from bayesmark.experiment import experiment_main  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BIN = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "target", "release", "quantune"))
# max_trials: the experiment's evaluations (n_calls × n_suggestions), which run.py passes as
# QUANTUNE_BUDGET, so a strategy that plans over the budget (the trust region's later phase)
# sees the real one; bayesmark itself decides when to stop.
BUDGET = int(os.environ.get("QUANTUNE_BUDGET", "10000"))


class Daemon:
    """A `quantune serve` in a temporary directory, stopped at exit."""

    def __init__(self, binary):
        if not os.path.exists(binary):
            raise FileNotFoundError(f"{binary}: build it with `cargo build --release` or set QUANTUNE_BIN")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="qt-bayesmark-")
        self.socket = os.path.join(self.dir, "q.sock")
        cfg = os.path.join(self.dir, "quantune.toml")
        with open(cfg, "w") as f:
            f.write(f'state_dir = "{self.dir}/state"\nsocket = "{self.socket}"\n'
                    "cpu_slots = 1\ngpu_discovery = false\n")
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(400):
            if os.path.exists(self.socket):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("quantune serve did not start; see " + self.log.name)
        atexit.register(self.close)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that atexit runs

    def cli(self, *args):
        out = subprocess.run([self.binary, "--socket", self.socket, *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"quantune {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def study_toml(name, seed, kind, variables, parallel):
    lines = [f'[study]\nname = "{name}"\nseed = {seed}\n',
             '[[objective]]\nmetric = "loss"\ndirection = "minimize"\n']
    for pname, typ, spec in variables:
        lines.append(f"[space.{pname}]")
        if typ == "float":
            lo, hi, log = spec
            lines.append(f'type = "float"\nlow = {lo!r}\nhigh = {hi!r}\nlog = {"true" if log else "false"}\n')
        elif typ == "int":
            lo, hi, log = spec
            lines.append(f'type = "int"\nlow = {lo}\nhigh = {hi}\nlog = {"true" if log else "false"}\n')
        else:
            choices = ", ".join(json.dumps(str(v)) for v in spec)
            lines.append(f'type = "categorical"\nchoices = [{choices}]\n')
    # QUANTUNE_STRATEGY: extra [strategy] keys for a variant run, e.g. "trust_region = true"
    # (run it into its own --db: the same optimizer name keeps the seeds paired).
    extra = os.environ.get("QUANTUNE_STRATEGY", "").replace(";", "\n")
    lines.append(f'[strategy]\nkind = "{kind}"\n{extra}\n')
    lines.append(f"[budget]\nmax_trials = {BUDGET}\nparallel = {parallel}\nmax_failed = {BUDGET}\n")
    lines.append('[trial]\nworkload = "external"\ntimeout = "24h"\n')
    return "\n".join(lines)


class QuantuneOptimizer(AbstractOptimizer):
    primary_import = "bayesmark"

    def __init__(self, api_config, kind="bayes", parallel=8):
        AbstractOptimizer.__init__(self, api_config)
        self.variables = warp.variables(api_config)
        self.cats = {n: spec for n, t, spec in self.variables if t == "cat"}
        # bayesmark seeds numpy's global stream from the experiment's uuid
        seed = int(np.random.randint(0, 2**31 - 1))
        self.daemon = Daemon(os.environ.get("QUANTUNE_BIN", DEFAULT_BIN))
        self.study = "bayesmark"
        path = os.path.join(self.daemon.dir, "study.toml")
        with open(path, "w") as f:
            f.write(study_toml(self.study, seed, kind, self.variables, parallel))
        self.daemon.cli("submit", path)
        self.handed = []  # (trial number, the dict handed out), not yet told

    def suggest(self, n_suggestions=1):
        out = []
        for _ in range(n_suggestions):
            ask = json.loads(self.daemon.cli("ask", self.study))
            x = {}
            for name, value in ask["params"].items():
                if name in self.cats:
                    value = next(v for v in self.cats[name] if str(v) == value)
                x[name] = warp.to_value(self.api_config, name, value)
            self.handed.append((ask["trial"], x))
            out.append(x)
        return out

    def observe(self, X, y):
        for x, v in zip(X, y):
            k = next((i for i, (_, h) in enumerate(self.handed) if h is x), None)
            if k is None:
                k = next(i for i, (_, h) in enumerate(self.handed) if h == x)
            trial, _ = self.handed.pop(k)
            v = float(v)
            if math.isfinite(v):
                self.daemon.cli("tell", self.study, str(trial), "--metrics", json.dumps({"loss": v}))
            else:
                self.daemon.cli("tell", self.study, str(trial), "--failed", "non-finite objective")


opt_wrapper = QuantuneOptimizer

if __name__ == "__main__":
    experiment_main(opt_wrapper)
