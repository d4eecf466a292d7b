"""quantune.trial: the protocol's lines, and a real trial under `quantune run` that is pruned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

from daemon import binary


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


class ProtocolTest(unittest.TestCase):
    def test_lines_and_validation(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            metrics = os.path.join(d, "m.jsonl")
            out = run_python(
                """
                from quantune import trial
                p = trial.params({"batch_size": 1, "extra": "kept"})
                assert p == {"learning_rate": 0.30000000000000004, "batch_size": 8, "extra": "kept"}, p
                assert trial.trial() == 3 and trial.study() == "s" and trial.attempt() == 2
                assert trial.inside_quantune()
                trial.report(10, eval_loss=2.5)
                for bad in (lambda: trial.report(-1, x=1), lambda: trial.report(1),
                            lambda: trial.final(step=1), lambda: trial.final(x=float("nan")),
                            lambda: trial.final(ok=True), lambda: trial.report(2, gpu="H100")):
                    try:
                        bad()
                    except ValueError:
                        continue
                    raise SystemExit("accepted a bad line")
                trial.final(latency_ms=1.25, gpu="H100", kernel=3)
                trial.infeasible("no fp8 here")
                """,
                {
                    "QUANTUNE_PARAMS": '{"learning_rate": 0.30000000000000004, "batch_size": 8}',
                    "QUANTUNE_TRIAL": "3",
                    "QUANTUNE_ATTEMPT": "2",
                    "QUANTUNE_STUDY": "s",
                    "QUANTUNE_METRICS_FILE": metrics,
                },
            )
            self.assertEqual(out.returncode, 0, out.stderr)
            with open(metrics) as f:
                lines = [json.loads(line) for line in f]
        self.assertEqual(
            lines,
            [
                {"step": 10, "eval_loss": 2.5},
                {"latency_ms": 1.25, "gpu": "H100", "kernel": 3.0},
                {"infeasible": "no fp8 here"},
            ],
        )

    def test_outside_quantune_lines_go_to_stdout(self) -> None:
        env = {k: "" for k in ("QUANTUNE_PARAMS", "QUANTUNE_METRICS_FILE", "QUANTUNE_TRIAL")}
        out = run_python(
            """
            from quantune import trial
            assert trial.params({"a": 1}) == {"a": 1}
            assert trial.trial() is None and not trial.should_prune()
            trial.report(1, loss=0.5)
            """,
            env,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"step": 1, "loss": 0.5})

    def test_bad_params_are_named(self) -> None:
        out = run_python("from quantune import trial; trial.params()", {"QUANTUNE_PARAMS": "[1]"})
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("QUANTUNE_PARAMS is not a JSON object", out.stderr)


PRUNED_TRIAL = """
import os, sys, time
from quantune import trial
p = trial.params()
trial.should_prune()  # installs the SIGTERM handler before the first report
for step in range(1, 200):
    trial.report(step, loss=float(p["x"]) * 10)
    if trial.should_prune():
        with open(os.path.join(sys.argv[1], f"stopped-{trial.trial()}"), "w") as f:
            f.write(str(step))
        sys.exit(0)
    time.sleep(0.1)
trial.final(loss=float(p["x"]))
"""


class RunTest(unittest.TestCase):
    def test_a_pruned_trial_stops_cleanly_under_quantune_run(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            script = os.path.join(d, "trial.py")
            with open(script, "w") as f:
                f.write(PRUNED_TRIAL)
            study = os.path.join(d, "s.toml")
            with open(study, "w") as f:
                f.write(
                    textwrap.dedent(
                        f"""
                        [study]
                        name = "pruned"
                        seed = 1

                        [[objective]]
                        metric = "loss"
                        direction = "minimize"

                        [[constraint]]
                        metric = "loss"
                        max = 1.0

                        [space.x]
                        type = "float"
                        low = 0.5
                        high = 1.0

                        [strategy]
                        kind = "random"

                        [budget]
                        max_trials = 2

                        [pruner]
                        constraint_grace = 0.0

                        [trial]
                        command = [{json.dumps(sys.executable)}, {json.dumps(script)}, {json.dumps(d)}]
                        timeout = "60s"
                        """
                    )
                )
            out = subprocess.run(
                [binary(), "run", study, "--state", os.path.join(d, "state")],
                capture_output=True,
                text=True,
                timeout=180,
            )
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertEqual(out.stderr.count(" pruned "), 2, out.stdout + out.stderr)
            stopped = sorted(n for n in os.listdir(d) if n.startswith("stopped-"))
            # Both trials saw should_prune() turn True and exited by themselves.
            self.assertEqual(stopped, ["stopped-0", "stopped-1"], out.stderr)


if __name__ == "__main__":
    unittest.main()
