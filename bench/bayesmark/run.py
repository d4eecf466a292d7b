#!/usr/bin/env python3
"""Runs the fixed Bayesmark problem set (problems.txt) for several optimizers with the official
harness, two experiments at a time, resumably.

Each experiment is the command `bayesmark-launch` generates (the official `gen_commands`, same
uuids and arguments): `bayesmark-exp` for the built-in wrappers (RandomSearch, HyperOpt,
Scikit-GP-Hedge), `python optimizers/NAME/optimizer.py` for ours (quantune, HEBO, Optuna), run
with `--opt-root` = optimizers/ as working directory, writing into DB_ROOT/DB/ as usual.
The order interleaves optimizers and problems repeat by repeat, so a run cut short still has
every optimizer on the same problems. A finished experiment is recorded in DB_ROOT/DB/done.txt
and skipped when the run is started again; `score.py` reads what is there.

    python run.py --db NAME [--repeats 2] [--slice] [--optimizers a,b] [--jobs 2]
"""

import argparse
import os
import subprocess
import sys
import time
import uuid as pyuuid
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
OPT_ROOT = os.path.join(HERE, "optimizers")
DEFAULT_OPTIMIZERS = ["quantune-bayes", "HEBO", "Optuna-GP", "Optuna-TPE", "Scikit-GP-Hedge",
                      "HyperOpt", "RandomSearch"]


def load_problems(path, only_slice):
    out = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            marked = parts[-1] == "*"
            if marked:
                parts = parts[:-1]
            if len(parts) != 3:
                sys.exit(f"{path}: bad line {line!r}: expected `model dataset metric [*]`")
            if only_slice and not marked:
                continue
            out.append(tuple(parts))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--db-root", default=os.path.join(HERE, "runs"))
    ap.add_argument("--problems", default=os.path.join(HERE, "problems.txt"))
    ap.add_argument("--slice", action="store_true", help="only the problems marked * in problems.txt")
    ap.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--first-repeat", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--calls", type=int, default=16)
    ap.add_argument("--suggest", type=int, default=8)
    ap.add_argument("--uuid", default="0123456789abcdef0123456789abcdef",
                    help="run uuid (fixes every experiment's seed; the same for all runs by default)")
    args = ap.parse_args()

    from bayesmark import cmd_parse as cmd
    from bayesmark.cmd_parse import CmdArgs
    from bayesmark.experiment_launcher import gen_commands
    from bayesmark.serialize import XRSerializer
    from bayesmark.constants import EXP_VARS

    os.makedirs(args.db_root, exist_ok=True)
    XRSerializer.init_db(args.db_root, db=args.db, keys=EXP_VARS, exist_ok=True)
    db_dir = os.path.join(args.db_root, args.db)
    done_path = os.path.join(db_dir, "done.txt")
    done = set(open(done_path).read().split("\n")) if os.path.exists(done_path) else set()

    settings = cmd.load_optimizer_settings(OPT_ROOT)
    lookup = {o: f for o, (f, _) in settings.items()}
    optimizers = args.optimizers.split(",")
    problems = load_problems(args.problems, args.slice)
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               QUANTUNE_BUDGET=str(args.calls * args.suggest))

    jobs = []
    for rep in range(args.first_repeat, args.first_repeat + args.repeats):
        for model, data, metric in problems:
            for opt in optimizers:
                a = {k: None for k in CmdArgs}
                a.update({CmdArgs.classifier: [model], CmdArgs.data: [data], CmdArgs.metric: [metric],
                          CmdArgs.optimizer: [opt], CmdArgs.n_calls: args.calls,
                          CmdArgs.n_suggest: args.suggest, CmdArgs.n_repeat: rep + 1,
                          CmdArgs.db_root: args.db_root, CmdArgs.db: args.db, CmdArgs.data_root: None})
                # the official generator; keep only this repeat's command
                cmds = [c for (r, *_), c in gen_commands(a, lookup, pyuuid.UUID(hex=args.uuid))
                        if int(r) == rep]
                assert len(cmds) == 1, cmds
                key = f"{rep} {model} {data} {metric} {opt}"
                if key not in done:
                    cmd_line = list(cmds[0])
                    if cmd_line[0] == "bayesmark-exp":
                        cmd_line[0] = os.path.join(bin_dir, "bayesmark-exp")
                    else:
                        cmd_line[0] = sys.executable
                    jobs.append((key, cmd_line))
    print(f"{len(jobs)} experiments to run ({len(done) - (1 if '' in done else 0)} done before)",
          file=sys.stderr, flush=True)
    log_dir = os.path.join(db_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)

    def one(job):
        key, cmd_line = job
        start = time.time()
        log = os.path.join(log_dir, key.replace(" ", "_") + ".log")
        with open(log, "w") as f:
            rc = subprocess.call(["nice", "-n", "10", *cmd_line], cwd=OPT_ROOT, env=env,
                                 stdout=f, stderr=subprocess.STDOUT)
        took = time.time() - start
        if rc == 0:
            with open(done_path, "a") as f:
                f.write(key + "\n")
        print(f"{'ok  ' if rc == 0 else 'FAIL'} {key} {took:.0f}s" + ("" if rc == 0 else f" (see {log})"),
              file=sys.stderr, flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, jobs))


if __name__ == "__main__":
    main()
