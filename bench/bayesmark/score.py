#!/usr/bin/env python3
"""The Bayesmark leaderboard score of every optimizer in one or more run databases.

Score of a run on a problem, as the NeurIPS 2020 BBO challenge computed it (bayesmark's
`compute_aggregates`, NORMED_MEAN on `_visible_to_opt`): the best value the optimizer saw over
its 16 batches, normalized by the challenge's baseline file (0 = the estimated optimum
`best`, 1 = `clip`, random search's median at the first batch), clipped to [-1, 1]; a problem's
score is 100 × (1 − mean over repeats), the leaderboard score 100 × (1 − mean over problems).
Printed: the leaderboard per optimizer over the problems every listed optimizer finished (the
same problems for all), then per model family, per problem, and any suggest() fallbacks to
random search (bayesmark's `optimizer_suggest_exception`).

    python score.py --db NAME [--db NAME2 ...] [--runs RAW.json ...] [--baseline FILE] [--export RAW.json]

Optimizers of a second database are labelled `NAME@DB2`. `--runs` reads the raw runs an earlier
`--export` wrote (the committed results files): its databases join those under `--db-root`, and
a database found in both is the union of their runs (a run counted once, by its uuid), so a run
continued on another machine scores together with the committed part.
"""

import argparse
import glob
import json
import os
import statistics
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_UUID = "0123456789abcdef0123456789abcdef"  # run.py's default
BASELINE = os.path.join(HERE, "..", "..", "..", "shared", "data", "bayesmark", "baseline-16-8.json")


def load_baseline(path):
    d = json.load(open(path))["data"]
    funcs = d["coords"]["function"]["data"]
    objs = d["coords"]["objective"]["data"]
    k = objs.index("_visible_to_opt")
    clip = d["data_vars"]["clip"]["data"]
    best = d["data_vars"]["best"]["data"]
    return {f: (best[i][k], clip[i][k]) for i, f in enumerate(funcs)}


def exported_runs(exported, db):
    """(optimizer, problem, run) for every run of database `db` in the `--runs` files."""
    for raw in exported:
        for opt, problems in raw.get(db, {}).items():
            for problem, rs in problems.items():
                for r in rs:
                    yield opt, problem, r


def export_runs(root, dbs, path, exported=()):
    """Writes {database: {optimizer: {problem: [{uuid, batches, best_visible, visible}]}}}, every
    batch's `_visible_to_opt` values, for committing the raw runs behind a table; the listed
    databases' runs from the `exported` files (`--runs`) are carried over, each uuid once per
    database."""
    out = {}
    for db in dbs:
        seen = set()  # per database: paired databases share their uuids
        for p in sorted(glob.glob(os.path.join(root, db, "eval", "*.json"))):
            d = json.load(open(p))
            a = d["meta"]["args"]
            vals = d["data"]["data_vars"]["_visible_to_opt"]["data"]
            problem = f"{a['--classifier']}_{a['--data']}_{a['--metric']}"
            out.setdefault(db, {}).setdefault(a["--opt"], {}).setdefault(problem, []).append({
                "uuid": a["--uuid"], "batches": len(vals),
                "best_visible": min(min(row) for row in vals), "visible": vals})
            seen.add(a["--uuid"])
        for opt, problem, r in exported_runs(exported, db):
            if r["uuid"] not in seen:
                seen.add(r["uuid"])
                out.setdefault(db, {}).setdefault(opt, {}).setdefault(problem, []).append(r)
    with open(path, "w") as f:
        json.dump(out, f, indent=None, sort_keys=True)


def load_runs(root, db, label_suffix, exported=()):
    """{(optimizer, problem): [(uuid, best visible value, batches) per repeat]}, and fallbacks
    per optimizer; runs of `db` in the `exported` files (`--runs`) included, each uuid once."""
    runs = defaultdict(list)
    seen = set()
    for path in sorted(glob.glob(os.path.join(root, db, "eval", "*.json"))):
        d = json.load(open(path))
        a = d["meta"]["args"]
        vals = d["data"]["data_vars"]["_visible_to_opt"]["data"]
        best = min(min(row) for row in vals)
        problem = f"{a['--classifier']}_{a['--data']}_{a['--metric']}"
        runs[(a["--opt"] + label_suffix, problem)].append((a["--uuid"], best, len(vals)))
        seen.add(a["--uuid"])
    for opt, problem, r in exported_runs(exported, db):
        if r["uuid"] not in seen:
            seen.add(r["uuid"])
            runs[(opt + label_suffix, problem)].append((r["uuid"], r["best_visible"], r["batches"]))
    fallbacks = defaultdict(int)
    for path in glob.glob(os.path.join(root, db, "logs", "*.log")):
        n = open(path, errors="replace").read().count("optimizer_suggest_exception")
        if n:
            opt = os.path.basename(path)[:-4].split("_")[-1]
            fallbacks[opt + label_suffix] += n
    return runs, fallbacks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", action="append", required=True)
    ap.add_argument("--db-root", default=os.path.join(HERE, "runs"))
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--calls", type=int, default=16, help="batches a run must have to count")
    ap.add_argument("--optimizers", default="", help="comma-separated: only these (default: all)")
    ap.add_argument("--repeats", type=int, default=0,
                    help="only repeats 0..N-1 of run.py's default run uuid (pairs two databases' "
                         "runs seed by seed); default: every run found")
    ap.add_argument("--export", default="", help="also write every run's raw values to this JSON file")
    ap.add_argument("--runs", action="append", default=[],
                    help="raw runs an earlier --export wrote (e.g. results-2026-12-01b.json); its "
                         "databases are scored as if they were under --db-root")
    args = ap.parse_args()
    exported = [json.load(open(p)) for p in args.runs]
    for db in args.db:
        if not os.path.isdir(os.path.join(args.db_root, db)) and not any(db in r for r in exported):
            sys.exit(f"score.py: database {db!r} is neither under {args.db_root} nor in any --runs file; "
                     f"run run.py --db {db} first, or name the results file with --runs")
    if args.export:
        export_runs(args.db_root, args.db, args.export, exported)
    base = load_baseline(args.baseline)
    runs, fallbacks = {}, defaultdict(int)
    for i, db in enumerate(args.db):
        r, f = load_runs(args.db_root, db, "" if i == 0 else "@" + db, exported)
        runs.update(r)
        for k, v in f.items():
            fallbacks[k] += v

    allowed = None
    if args.repeats:
        import uuid as pyuuid
        run_uuid = pyuuid.UUID(hex=RUN_UUID)
        allowed = set()
        for (opt, problem) in runs:
            clf, data, metric = problem.split("_")
            base_opt = opt.split("@")[0]
            for rep in range(args.repeats):
                key = "_".join((str(rep), clf, data, base_opt, metric))
                allowed.add(pyuuid.uuid5(run_uuid, key).hex)
    scores = defaultdict(dict)  # optimizer -> problem -> score
    for (opt, problem), rs in runs.items():
        rs = [b for u, b, n in rs if n == args.calls and (allowed is None or u in allowed)]
        if not rs:
            continue
        best_opt, clip = base[problem]
        normed = [min(max((b - best_opt) / (clip - best_opt), -1.0), 1.0) for b in rs]
        scores[opt][problem] = (100.0 * (1.0 - statistics.mean(normed)), len(rs))
    if args.optimizers:
        keep = set(args.optimizers.split(","))
        scores = {o: v for o, v in scores.items() if o in keep}
    opts = sorted(scores, key=lambda o: -statistics.mean(s for s, _ in scores[o].values()))
    common = sorted(set.intersection(*(set(scores[o]) for o in opts))) if opts else []
    print(f"# Bayesmark score (16×8), {len(common)} problems every optimizer finished")
    print(f"{'optimizer':<28}{'score':>8}{'repeats':>9}{'problems':>10}")
    ranked = sorted(opts, key=lambda o: -statistics.mean(scores[o][p][0] for p in common)) if common else opts
    for o in ranked:
        s = statistics.mean(scores[o][p][0] for p in common) if common else float("nan")
        reps = sum(scores[o][p][1] for p in common) / max(len(common), 1)
        print(f"{o:<28}{s:>8.2f}{reps:>9.1f}{len(scores[o]):>10}")
    families = sorted({p.split("_")[0] for p in common})
    print("\n# per model family (same problems)")
    print(f"{'optimizer':<28}" + "".join(f"{f:>10}" for f in families))
    for o in ranked:
        row = []
        for f in families:
            ps = [p for p in common if p.split("_")[0] == f]
            row.append(statistics.mean(scores[o][p][0] for p in ps))
        print(f"{o:<28}" + "".join(f"{v:>10.1f}" for v in row))
    allp = sorted({p for o in opts for p in scores[o]})
    print("\n# per problem (score, repeats)")
    print(f"{'problem':<24}" + "".join(f"{o[:14]:>15}" for o in ranked))
    for p in allp:
        cells = []
        for o in ranked:
            if p in scores[o]:
                s, n = scores[o][p]
                cells.append(f"{s:>11.1f} ({n})")
            else:
                cells.append(f"{'–':>15}")
        print(f"{p:<24}" + "".join(cells))
    if fallbacks:
        print("\n# suggest() failures (bayesmark fell back to random search for that batch)")
        for o, n in sorted(fallbacks.items()):
            print(f"{o}: {n}")
    print("\n# rerun: " + " ".join(["python", "bench/bayesmark/score.py"] +
                                    [f"--db {d}" for d in args.db] +
                                    [f"--runs {r}" for r in args.runs] +
                                    ([f"--optimizers {args.optimizers}"] if args.optimizers else []) +
                                    ([f"--repeats {args.repeats}"] if args.repeats else [])),
          file=sys.stdout)


if __name__ == "__main__":
    main()
