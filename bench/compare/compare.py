#!/usr/bin/env python3
"""quantune vs Optuna on the same problems, same budget, many seeds.

quantune runs through its real command line: one `quantune serve` daemon per worker in a
temporary directory, one study per (problem, method, seed) with `workload = "external"`, driven
by `quantune ask` / `quantune tell`. Optuna runs in-process (TPESampler, GPSampler,
RandomSampler; NSGAIISampler on the multi-objective problems).

Prints, per problem, the mean and median best value found (hypervolume for multi-objective
problems) and the normalized score 100 × (random's mean best − best) / (random's mean best −
best known) (Bayesmark's; Optuna's RandomSampler is "random"). For the scikit-learn problems the
best known value is the best any run found.

Usage: see README.md beside this file.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import problems as P  # noqa: E402

QUANTUNE_METHODS = ["quantune-bayes", "quantune-tpe", "quantune-random"]
OPTUNA_METHODS = ["optuna-tpe", "optuna-gp", "optuna-random"]
MO_EXTRA = ["optuna-nsga2"]
QUICK_PROBLEMS = ["branin", "hartmann6", "mixed", "gardner", "svm-cancer", "zdt1"]


# --- quantune through its CLI ------------------------------------------------------------------

class Daemon:
    """A `quantune serve` in a temporary directory, stopped on exit."""

    def __init__(self, binary):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="qt-compare-")
        self.socket = os.path.join(self.dir, "q.sock")
        cfg = os.path.join(self.dir, "quantune.toml")
        with open(cfg, "w") as f:
            f.write(f'state_dir = "{self.dir}/state"\nsocket = "{self.socket}"\n'
                    'cpu_slots = 1\ngpu_discovery = false\n')
        self.log = open(os.path.join(self.dir, "serve.log"), "w")
        self.proc = subprocess.Popen([binary, "serve", "--config", cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(self.socket):
                return
            time.sleep(0.05)
        raise RuntimeError("quantune serve did not start; see " + self.log.name)

    def cli(self, *args):
        out = subprocess.run([self.binary, "--socket", self.socket, *args],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"quantune {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def toml_value(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def study_toml(problem, name, kind, seed, budget):
    lines = [f'[study]\nname = "{name}"\nseed = {seed}\n']
    for metric, direction in problem["objectives"]:
        lines.append(f'[[objective]]\nmetric = "{metric}"\ndirection = "{direction}"\n')
    for metric, lo, hi in problem["constraints"]:
        lines.append(f'[[constraint]]\nmetric = "{metric}"')
        if lo is not None:
            lines.append(f"min = {lo!r}")
        if hi is not None:
            lines.append(f"max = {hi!r}")
        lines.append("")
    for pname, spec in problem["space"].items():
        lines.append(f"[space.{pname}]")
        if spec[0] == "float":
            lines.append(f'type = "float"\nlow = {spec[1]!r}\nhigh = {spec[2]!r}\n'
                         f'log = {"true" if spec[3] else "false"}\n')
        elif spec[0] == "int":
            lines.append(f'type = "int"\nlow = {spec[1]}\nhigh = {spec[2]}\n')
        elif spec[0] == "int_values":
            lines.append(f'type = "int"\nvalues = [{", ".join(map(str, spec[1]))}]\n')
        else:
            lines.append(f'type = "categorical"\nchoices = [{", ".join(map(toml_value, spec[1]))}]\n')
    # QUANTUNE_STRATEGY: extra [strategy] keys for a variant run, e.g. "trust_region = true"
    # (several separated by ";"), as in bench/bayesmark.
    extra = os.environ.get("QUANTUNE_STRATEGY", "").replace(";", "\n")
    lines.append(f'[strategy]\nkind = "{kind}"\n{extra}\n')
    lines.append(f"[budget]\nmax_trials = {budget}\nparallel = 1\nmax_failed = {budget}\n")
    lines.append('[trial]\nworkload = "external"\ntimeout = "1h"\n')
    return "\n".join(lines)


def run_quantune(daemon, problem, kind, seed, budget):
    name = f"{problem['name']}-{kind}-{seed}"
    path = os.path.join(daemon.dir, name + ".toml")
    with open(path, "w") as f:
        f.write(study_toml(problem, name, kind, seed, budget))
    daemon.cli("submit", path)
    values = []
    for _ in range(budget):
        ask = json.loads(daemon.cli("ask", name))
        metrics = problem["evaluate"](ask["params"])
        daemon.cli("tell", name, str(ask["trial"]), "--metrics", json.dumps(metrics))
        values.append(metrics)
    return values


# --- Optuna -----------------------------------------------------------------------------------

def run_optuna(problem, method, seed, budget):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if method == "optuna-gp":
        import torch
        torch.set_num_threads(1)  # one worker per core; more threads only contend
    import warnings
    warnings.filterwarnings("ignore")
    constraints = problem["constraints"]

    def constraints_func(trial):
        return trial.user_attrs["violations"]

    cf = constraints_func if constraints else None
    if method == "optuna-tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=cf)
    elif method == "optuna-gp":
        sampler = optuna.samplers.GPSampler(seed=seed, constraints_func=cf)
    elif method == "optuna-nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, constraints_func=cf)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    directions = [d for _, d in problem["objectives"]]
    study = optuna.create_study(directions=directions, sampler=sampler)
    values = []

    def objective(trial):
        params = {}
        for pname, spec in problem["space"].items():
            if spec[0] == "float":
                params[pname] = trial.suggest_float(pname, spec[1], spec[2], log=spec[3])
            elif spec[0] == "int":
                params[pname] = trial.suggest_int(pname, spec[1], spec[2])
            else:
                params[pname] = trial.suggest_categorical(pname, spec[1])
        metrics = problem["evaluate"](params)
        values.append(metrics)
        violations = []
        for metric, lo, hi in constraints:
            v = metrics[metric]
            violations.append(max((lo - v) if lo is not None else -1e-12,
                                  (v - hi) if hi is not None else -1e-12))
        trial.set_user_attr("violations", violations)
        out = [metrics[m] for m, _ in problem["objectives"]]
        return out[0] if len(out) == 1 else out

    study.optimize(objective, n_trials=budget)
    return values


# --- scoring ----------------------------------------------------------------------------------

def best_value(problem, values):
    """Best feasible loss (single objective, in the objective's own sign) or the hypervolume of
    the feasible losses (multi-objective)."""
    feasible = [m for m in values if all(
        (lo is None or m[c] >= lo) and (hi is None or m[c] <= hi)
        for c, lo, hi in problem["constraints"])]
    objs = problem["objectives"]
    if len(objs) == 1:
        metric, direction = objs[0]
        if not feasible:
            return float("nan")
        vals = [m[metric] for m in feasible]
        return min(vals) if direction == "minimize" else max(vals)
    losses = [[m[o] if d == "minimize" else -m[o] for o, d in objs] for m in feasible]
    return P.hypervolume(losses, problem["reference"])


def job(args):
    problem_name, method, seed, budget, binary = args
    problem = next(p for p in P.all_problems() if p["name"] == problem_name)
    start = time.time()
    if method.startswith("quantune-"):
        daemon = Daemon(binary)
        try:
            values = run_quantune(daemon, problem, method.split("-", 1)[1], seed, budget)
        finally:
            daemon.close()
    else:
        values = run_optuna(problem, method, seed, budget)
    return problem_name, method, seed, best_value(problem, values), time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantune", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "target", "release", "quantune"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=40, help="evaluations per single-objective run")
    ap.add_argument("--mo-budget", type=int, default=100, help="evaluations per multi-objective run")
    ap.add_argument("--problems", default="", help="comma-separated names (default: all)")
    ap.add_argument("--methods", default="", help="comma-separated methods (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_PROBLEMS)}")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="", help="write the raw results as JSON here")
    ap.add_argument("--merge", default="",
                    help="start from the raw results of an earlier run (its --out file); the "
                         "methods run now replace theirs, e.g. to rerun quantune after a change "
                         "without rerunning Optuna")
    args = ap.parse_args()

    names = [p["name"] for p in P.all_problems()]
    if args.problems:
        names = args.problems.split(",")
    elif args.quick:
        names = QUICK_PROBLEMS
    methods_all = QUANTUNE_METHODS + OPTUNA_METHODS
    chosen = args.methods.split(",") if args.methods else None
    binary = os.path.abspath(args.quantune)
    jobs = []
    problems = {p["name"]: p for p in P.all_problems()}
    for name in names:
        mo = len(problems[name]["objectives"]) > 1
        for method in methods_all + (MO_EXTRA if mo else []):
            if chosen and method not in chosen and (method != "optuna-random" or args.merge):
                continue
            for seed in range(args.seeds):
                jobs.append((name, method, seed, args.mo_budget if mo else args.budget, binary))
    results = {}
    if args.merge:
        with open(args.merge) as f:
            results = json.load(f)
        for name, method, *_ in jobs:
            results.get(name, {}).pop(method, None)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for i, (name, method, seed, best, secs) in enumerate(pool.map(job, jobs)):
            results.setdefault(name, {}).setdefault(method, []).append(best)
            print(f"[{i + 1}/{len(jobs)} {time.time() - t0:.0f}s] {name} {method} seed {seed}: "
                  f"{best:.6g} ({secs:.1f}s)", file=sys.stderr, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    report(results, problems, args)


def report(results, problems, args):
    methods = [m for m in QUANTUNE_METHODS + OPTUNA_METHODS + MO_EXTRA
               if any(m in r for r in results.values())]
    print(f"\nBudget: {args.budget} evaluations (single objective), {args.mo_budget} "
          f"(multi-objective, hypervolume); {args.seeds} seeds.\n")
    print("Mean (median) best value; multi-objective: hypervolume, larger is better.\n")
    print("| problem | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    for name, r in results.items():
        cells = []
        for m in methods:
            v = [x for x in r.get(m, []) if x == x]
            cells.append(f"{statistics.mean(v):.4g} ({statistics.median(v):.4g})" if v else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nNormalized score (100 = best known, 0 = random's mean; larger is better).\n")
    print("| problem | " + " | ".join(methods) + " |")
    print("| --- |" + " --- |" * len(methods))
    totals = {m: [] for m in methods}
    for name, r in results.items():
        p = problems[name]
        mo = len(p["objectives"]) > 1
        maximize = mo or p["objectives"][0][1] == "maximize"
        rnd = [x for x in r.get("optuna-random", []) if x == x]
        if not rnd:
            continue
        rmean = statistics.mean(rnd)
        finite = [x for v in r.values() for x in v if x == x]
        best = p["best"]
        if best is None:
            best = max(finite) if maximize else min(finite)
        cells = []
        for m in methods:
            v = r.get(m, [])
            if not v:
                cells.append("—")
                continue
            # A run with no feasible point scores as badly as random's worst run.
            worst = min(rnd) if maximize else max(rnd)
            v = [x if x == x else worst for x in v]
            denom = (best - rmean) if maximize else (rmean - best)
            num = (statistics.mean(v) - rmean) if maximize else (rmean - statistics.mean(v))
            # Random already reaches the best known value (k-NN/wine): no room to score. The
            # tolerance absorbs rounding: values stored by an earlier run carry 6 significant
            # digits, a rerun's full precision, and a merge mixes them.
            tiny = 1e-6 * max(abs(rmean), abs(best), 1e-300)
            score = 100 * num / denom if abs(denom) > tiny else 0.0
            totals[m].append(score)
            cells.append(f"{score:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **mean** | " + " | ".join(
        f"**{statistics.mean(totals[m]):.1f}**" if totals[m] else "—" for m in methods) + " |")
    # Head-to-head: quantune-bayes vs Optuna TPE on single-objective problems (mean best).
    so = [n for n in results if len(problems[n]["objectives"]) == 1]
    if so and all(m in results[n] for n in so for m in ("quantune-bayes", "optuna-tpe")):
        wins = 0
        for n in so:
            sign = 1 if problems[n]["objectives"][0][1] == "minimize" else -1
            qb = statistics.mean([x for x in results[n]["quantune-bayes"] if x == x] or [1e300])
            ot = statistics.mean([x for x in results[n]["optuna-tpe"] if x == x] or [1e300])
            wins += sign * qb < sign * ot
        print(f"\nquantune-bayes beats optuna-tpe (mean best) on {wins}/{len(so)} "
              "single-objective problems.")


if __name__ == "__main__":
    main()
