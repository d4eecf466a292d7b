"""quantune.Client and quantune.Study against a real daemon (Unix socket and TCP + token)."""

from __future__ import annotations

import os
import tempfile
import unittest

import quantune
from quantune import ApiError, Client, DaemonUnreachable, Study, TrialPruned

from daemon import REPO, TOKEN, Daemon

D: Daemon


def setUpModule() -> None:
    global D
    D = Daemon().start()


def tearDownModule() -> None:
    D.stop()


SPACE = {
    "x": {"type": "float", "low": -2.0, "high": 2.0},
    "q": {"type": "categorical", "choices": ["int8", "int4"]},
}


def client() -> Client:
    return Client(socket=D.socket)


class ClientTest(unittest.TestCase):
    def test_installed_package_is_used(self) -> None:
        # The suite runs against `pip install ./python`, not the source tree.
        self.assertIn("site-packages", quantune.__file__)

    def test_health_over_the_socket(self) -> None:
        h = client().health()
        self.assertTrue(h["ok"])
        self.assertRegex(h["version"], r"^\d+\.\d+\.\d+")

    def test_environment_picks_the_socket(self) -> None:
        old = dict(os.environ)
        try:
            os.environ.pop("QUANTUNE_URL", None)
            os.environ["QUANTUNE_SOCKET"] = D.socket
            self.assertTrue(Client().health()["ok"])
        finally:
            os.environ.clear()
            os.environ.update(old)

    def test_tcp_needs_the_token(self) -> None:
        ok = Client(url=D.url, token=TOKEN)
        self.assertIsInstance(ok.studies(), list)
        with self.assertRaises(ApiError) as e:
            Client(url=D.url, token="not-the-token-at-all").studies()
        self.assertEqual(e.exception.status, 401)
        with self.assertRaises(ApiError) as e:
            Client(url=D.url, token=None).studies()
        self.assertEqual(e.exception.status, 401)
        self.assertIn("Bearer", e.exception.message)

    def test_token_file_and_environment(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
            f.write(TOKEN + "\n")
        old = dict(os.environ)
        try:
            os.environ["QUANTUNE_URL"] = D.url
            os.environ.pop("QUANTUNE_TOKEN", None)
            os.environ["QUANTUNE_TOKEN_FILE"] = f.name
            self.assertTrue(Client().health()["ok"])
        finally:
            os.environ.clear()
            os.environ.update(old)
            os.unlink(f.name)

    def test_bad_url_is_refused_with_the_fix(self) -> None:
        with self.assertRaisesRegex(ValueError, "http://HOST:PORT"):
            Client(url="https://example:1")
        with self.assertRaisesRegex(ValueError, "http://HOST:PORT"):
            Client(url="http://nohost")

    def test_no_daemon_says_where_it_looked(self) -> None:
        c = Client(socket=os.path.join(D.dir, "nothing.sock"))
        with self.assertRaises(DaemonUnreachable) as e:
            c.health()
        self.assertIn("nothing.sock", str(e.exception))
        self.assertIn("QUANTUNE_SOCKET", str(e.exception))

    def test_unknown_study_is_a_404(self) -> None:
        with self.assertRaises(ApiError) as e:
            Study.load("no-such-study", client=client())
        self.assertEqual(e.exception.status, 404)

    def test_bad_study_names_the_key(self) -> None:
        with self.assertRaises(ApiError) as e:
            Study.create(
                "bad-space",
                space={"x": {"type": "float", "low": 1.0, "high": 0.5}},
                objectives={"y": "minimize"},
                client=client(),
            )
        self.assertEqual(e.exception.status, 400)
        self.assertIn("space.x", e.exception.message)

    def test_objectives_need_a_direction(self) -> None:
        with self.assertRaisesRegex(ValueError, "minimize"):
            Study.create("o", space=SPACE, objectives="y", client=client())


class StudyTest(unittest.TestCase):
    def test_ask_report_tell(self) -> None:
        s = Study.create(
            "ask-tell",
            space=SPACE,
            objectives={"loss": "minimize"},
            constraints={"size": {"max": 10.0}},
            strategy={"kind": "random"},
            seed=7,
            max_trials=3,
            client=client(),
        )
        self.assertEqual(s.state, "running")
        t = s.ask()
        self.assertEqual(set(t.params), {"x", "q"})
        self.assertTrue(-2.0 <= t["x"] <= 2.0)
        self.assertIn(t["q"], ("int8", "int4"))
        self.assertFalse(t.report(1, loss=3.0))
        view = t.tell(loss=t["x"] ** 2, size=1.0)
        self.assertEqual(view["state"], "complete")
        self.assertEqual(view["metrics"]["loss"], t["x"] ** 2)
        # A missing constraint metric is refused by the daemon with its name.
        t2 = s.ask()
        with self.assertRaises(ApiError) as e:
            t2.tell(loss=1.0)
        self.assertEqual(e.exception.status, 400)
        self.assertIn("size", e.exception.message)
        t2.infeasible("does not fit")
        t3 = s.ask()
        t3.fail("crashed")
        # Budget used: the next ask is a 409.
        with self.assertRaises(ApiError) as e:
            s.ask()
        self.assertEqual(e.exception.status, 409)
        states = [tr["state"] for tr in s.trials()]
        self.assertEqual(states, ["complete", "infeasible", "failed"])
        detail = s.trial(t.number)
        self.assertEqual([r["step"] for r in detail["reports"]], [1])
        self.assertEqual(s.best_params, t.params)
        self.assertEqual(s.best_value, t["x"] ** 2)
        self.assertEqual(Study.load("ask-tell", client=client()).objectives, ["loss"])

    def test_optimize_like_optuna(self) -> None:
        s = Study.create(
            "optimize",
            space={"x": {"type": "float", "low": -3.0, "high": 3.0}},
            objectives={"y": "minimize"},
            strategy={"kind": "tpe", "initial_trials": 4},
            seed=1,
            max_trials=12,
            client=client(),
        )
        seen = []
        s.optimize(lambda t: (t["x"] - 1.0) ** 2, n_trials=10, callbacks=[lambda st, t: seen.append(t.number)])
        self.assertEqual(len(seen), 10)
        trials = s.trials()
        self.assertEqual(len(trials), 10)
        self.assertTrue(all(t["state"] == "complete" for t in trials))
        best = min(t["metrics"]["y"] for t in trials)
        self.assertEqual(s.best_value, best)
        # Without n_trials it runs until the budget is used, then returns.
        s.optimize(lambda t: (t["x"] - 1.0) ** 2)
        self.assertEqual(len(s.trials()), 12)
        self.assertEqual(s.state, "completed")
        rows = s.leaderboard()
        self.assertEqual([r["rank"] for r in rows[:3]], [1, 2, 3])
        self.assertEqual(rows[0]["metrics"]["y"], best)
        self.assertEqual(len(s.leaderboard(top=5)), 5)

    def test_optimize_records_failures_and_prunes(self) -> None:
        s = Study.create(
            "prune-and-fail",
            space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
            objectives={"loss": "minimize"},
            constraints={"loss": {"max": 0.5}},
            pruner={"kind": "none", "constraint_grace": 0.0},
            strategy={"kind": "random"},
            max_trials=6,
            seed=3,
            client=client(),
        )
        calls = {"n": 0}

        def objective(t: quantune.Trial) -> float:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("boom")
            if calls["n"] == 2:
                # Breaks the constraint by more than the grace: the daemon prunes.
                if t.report(1, loss=5.0):
                    raise TrialPruned()
                raise AssertionError("the quality gate did not prune")
            if calls["n"] == 3:
                return [0.25, 1.0]  # two values for one objective
            return 0.1

        with self.assertRaisesRegex(RuntimeError, "boom"):
            s.optimize(objective, n_trials=3)
        with self.assertRaisesRegex(ValueError, "2 values for 1 objectives"):
            s.optimize(objective, n_trials=3, catch=RuntimeError)
        s.optimize(objective, n_trials=1)
        states = [t["state"] for t in s.trials()]
        self.assertEqual(states, ["failed", "pruned", "failed", "complete"])
        self.assertIn("RuntimeError: boom", s.trials()[0]["reason"])

    def test_enqueue_runs_first(self) -> None:
        s = Study.create(
            "enqueue",
            space=SPACE,
            objectives={"loss": "minimize"},
            max_trials=2,
            client=client(),
        )
        s.enqueue({"x": 0.5, "q": "int4"})
        t = s.ask()
        self.assertEqual(t.params, {"x": 0.5, "q": "int4"})
        t.tell(loss=0.0)

    def test_create_from_a_toml_file(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.toml")
            with open(path, "w") as f:
                f.write(
                    '[study]\nname = "from-file"\nseed = 2\n\n[[objective]]\nmetric = "y"\n'
                    'direction = "maximize"\n\n[space.x]\ntype = "int"\nvalues = [1, 2, 3]\n\n'
                    '[strategy]\nkind = "grid"\n\n[budget]\nmax_trials = 3\n\n'
                    '[trial]\nworkload = "external"\n'
                )
            with self.assertRaisesRegex(ValueError, "from-file"):
                Study.create("other-name", file=path, client=client())
            s = Study.create(file=path, client=client())
            self.assertEqual(s.name, "from-file")
            s.optimize(lambda t: float(t["x"]))
            self.assertEqual(sorted(t["params"]["x"] for t in s.trials()), [1, 2, 3])
            self.assertEqual(s.best_params, {"x": 3})
            # A name already taken: refused, or loaded with load_if_exists.
            with self.assertRaises(ApiError) as e:
                Study.create(file=path, client=client())
            self.assertEqual(e.exception.status, 409)
            again = Study.create(file=path, load_if_exists=True, client=client())
            self.assertEqual(again.state, "completed")
            # A syntax error names the file and line.
            with open(path, "a") as f:
                f.write("oops = \n")
            with self.assertRaises((ValueError, ApiError)) as e2:
                Study.create(file=path, client=client())
            self.assertIn("s.toml", str(e2.exception))

    def test_leaderboard_frame(self) -> None:
        s = Study.create(
            "frame",
            space={"x": {"type": "int", "values": [1, 2]}},
            objectives={"y": "minimize"},
            strategy={"kind": "grid"},
            max_trials=2,
            client=client(),
        )
        s.optimize(lambda t: float(t["x"]))
        try:
            import pandas  # noqa: F401
        except ImportError:
            with self.assertRaisesRegex(ImportError, "pip install pandas"):
                s.leaderboard(frame=True)
            self.assertIsInstance(s.leaderboard(frame=None), list)
            if os.environ.get("QUANTUNE_REQUIRE_PANDAS") == "1":
                self.fail("QUANTUNE_REQUIRE_PANDAS=1 but pandas is not importable")
            self.skipTest("pandas is not installed")
        df = s.leaderboard(frame=True)
        self.assertEqual(list(df["rank"]), [1, 2])
        self.assertEqual(list(df["params.x"]), [1, 2])
        self.assertEqual(list(df["metrics.y"]), [1.0, 2.0])

    def test_pause_resume_cancel(self) -> None:
        s = Study.create("lifecycle", space=SPACE, objectives={"y": "minimize"}, client=client())
        self.assertEqual(s.pause()["state"], "paused")
        with self.assertRaises(ApiError) as e:
            s.ask()
        self.assertEqual(e.exception.status, 409)
        self.assertEqual(s.resume()["state"], "running")
        self.assertEqual(s.cancel()["state"], "cancelled")
        # optimize on a finished study returns at once.
        s.optimize(lambda t: 0.0, n_trials=3)
        self.assertEqual(s.trials(), [])


    def test_extend_then_delete(self) -> None:
        c = client()
        s = Study.create(
            "extend-delete", space=SPACE, objectives={"y": "minimize"}, max_trials=1, client=c
        )
        s.optimize(lambda t: 1.0)
        self.assertEqual(c.study("extend-delete")["state"], "completed")
        reopened = c.extend("extend-delete", max_trials=2)
        self.assertEqual((reopened["state"], reopened["max_trials"]), ("running", 2))
        s.optimize(lambda t: 2.0)
        self.assertEqual(len(s.trials()), 2)
        with self.assertRaises(ApiError) as e:
            c.extend("extend-delete", max_trials=1)
        self.assertEqual(e.exception.status, 400)
        self.assertEqual(c.delete("extend-delete"), {"name": "extend-delete", "trials": 2})
        with self.assertRaises(ApiError) as e:
            c.study("extend-delete")
        self.assertEqual(e.exception.status, 404)


class DocsTest(unittest.TestCase):
    def test_the_documented_example_runs(self) -> None:
        with open(os.path.join(REPO, "docs", "PYTHON.md"), encoding="utf-8") as f:
            text = f.read()
        section = text[text.index("## Driving a study") :]
        start = section.index("```python\n") + len("```python\n")
        code = section[start : section.index("\n```", start)]
        old = dict(os.environ)
        try:
            os.environ.pop("QUANTUNE_URL", None)
            os.environ["QUANTUNE_SOCKET"] = D.socket
            ns: dict = {}
            exec(compile(code, "docs/PYTHON.md", "exec"), ns)
        finally:
            os.environ.clear()
            os.environ.update(old)
        s = ns["study"]
        self.assertEqual(len(s.trials()), 20)
        self.assertEqual(s.state, "completed")
        self.assertLess(s.best_value, 1.0)


if __name__ == "__main__":
    unittest.main()
