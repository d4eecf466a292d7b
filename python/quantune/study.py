"""Studies driven from Python: create or load one, ask for trials, report, tell, optimize.

::

    import quantune

    study = quantune.Study.create(
        "lr-sweep",
        space={"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
               "quantization": {"type": "categorical", "choices": ["int8", "int4"]}},
        objectives={"eval_loss": "minimize"},
        max_trials=20,
    )

    def objective(trial):
        loss = train(**trial.params)                # your code
        return loss                                 # the (single) objective's value

    study.optimize(objective, n_trials=20)
    print(study.best_params)
    for row in study.leaderboard():
        print(row["rank"], row["params"], row["metrics"])

A study created from a dict is an ``external`` (ask/tell) study unless ``trial=`` says
otherwise; the daemon's strategy proposes, this process runs the trials.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

from . import _toml
from .client import ApiError, Client

__all__ = ["Study", "Trial", "TrialPruned"]

#: What an objective function may return: one number, one per objective, or named metrics.
ObjectiveValue = Union[float, int, Sequence[float], Mapping[str, float]]


class TrialPruned(Exception):
    """Raise from an objective to stop a trial the daemon told to prune (``trial.report`` was True)."""


class Trial:
    """One trial handed out by :meth:`Study.ask`: its number and parameters.

    ``report`` sends an intermediate value and returns whether the daemon pruned the trial;
    ``tell``/``fail``/``infeasible`` finish it.
    """

    def __init__(self, study: "Study", number: int, params: Dict[str, Any]) -> None:
        self.study = study
        self.number = number
        self.params = params
        self.pruned = False
        self.finished = False

    def __repr__(self) -> str:
        return f"Trial({self.study.name!r}, {self.number}, {self.params!r})"

    def __getitem__(self, name: str) -> Any:
        return self.params[name]

    def report(self, step: int, **metrics: float) -> bool:
        """An intermediate report; True means the daemon pruned this trial: stop it."""
        prune = self.study.report(self.number, step, **metrics)
        if prune:
            self.pruned = True
            self.finished = True
        return prune

    def should_prune(self) -> bool:
        """Whether an earlier :meth:`report` was answered with prune."""
        return self.pruned

    def tell(self, **metrics: float) -> Dict[str, Any]:
        """Finishes the trial with its final metrics (every objective and constraint metric)."""
        out = self.study.tell(self.number, metrics=metrics)
        self.finished = True
        return out

    def fail(self, reason: str) -> Dict[str, Any]:
        """Finishes the trial as failed (re-queued while ``trial.retries`` allow)."""
        out = self.study.tell(self.number, failed=reason)
        self.finished = True
        return out

    def infeasible(self, reason: str) -> Dict[str, Any]:
        """Finishes the trial as infeasible: this configuration cannot work."""
        out = self.study.tell(self.number, infeasible=reason)
        self.finished = True
        return out


def _objectives(objectives: Any) -> List[Dict[str, str]]:
    if isinstance(objectives, str):
        raise ValueError(
            f'objectives={objectives!r}: give the direction too, e.g. {{"{objectives}": "minimize"}}'
        )
    if isinstance(objectives, Mapping):
        return [{"metric": str(k), "direction": str(v)} for k, v in objectives.items()]
    out = []
    for i, o in enumerate(objectives):
        if not isinstance(o, Mapping) or "metric" not in o:
            raise ValueError(
                f'objectives[{i}] = {o!r}: write {{"metric": "…", "direction": "minimize"}}'
            )
        out.append(dict(o))
    return out


def _constraints(constraints: Any) -> List[Dict[str, Any]]:
    if isinstance(constraints, Mapping):
        out = []
        for k, v in constraints.items():
            if not isinstance(v, Mapping):
                raise ValueError(f'constraints["{k}"] = {v!r}: write {{"max": …}} or {{"min": …}}')
            out.append({"metric": str(k), **dict(v)})
        return out
    return [dict(c) for c in constraints]


def definition(
    name: str,
    space: Mapping[str, Any],
    objectives: Any,
    constraints: Any = None,
    strategy: Optional[Mapping[str, Any]] = None,
    budget: Optional[Mapping[str, Any]] = None,
    pruner: Optional[Mapping[str, Any]] = None,
    trial: Optional[Mapping[str, Any]] = None,
    description: Optional[str] = None,
    seed: Optional[int] = None,
    max_trials: Optional[int] = None,
    parallel: Optional[int] = None,
) -> Dict[str, Any]:
    """The study file (as a dict in the TOML's shape, docs/STUDY.md) for these arguments."""
    study: Dict[str, Any] = {"name": name}
    if description is not None:
        study["description"] = description
    if seed is not None:
        study["seed"] = int(seed)
    doc: Dict[str, Any] = {"study": study, "objective": _objectives(objectives)}
    if constraints:
        doc["constraint"] = _constraints(constraints)
    doc["space"] = {k: dict(v) for k, v in space.items()}
    if strategy:
        doc["strategy"] = dict(strategy)
    b = dict(budget or {})
    if max_trials is not None:
        b["max_trials"] = int(max_trials)
    if parallel is not None:
        b["parallel"] = int(parallel)
    b.setdefault("max_trials", 100)
    doc["budget"] = b
    if pruner:
        doc["pruner"] = dict(pruner)
    doc["trial"] = dict(trial) if trial is not None else {"workload": "external"}
    return doc


class Study:
    """A study in the daemon, by name; every property reads the daemon's current view."""

    def __init__(self, name: str, client: Optional[Client] = None) -> None:
        self.name = name
        self.client = client or Client()
        self._summary: Optional[Dict[str, Any]] = None
        self._objectives: Optional[List[str]] = None

    def __repr__(self) -> str:
        return f"Study({self.name!r})"

    # ---- making one ----

    @classmethod
    def create(
        cls,
        name: Optional[str] = None,
        *,
        space: Optional[Mapping[str, Any]] = None,
        objectives: Any = None,
        constraints: Any = None,
        strategy: Optional[Mapping[str, Any]] = None,
        budget: Optional[Mapping[str, Any]] = None,
        pruner: Optional[Mapping[str, Any]] = None,
        trial: Optional[Mapping[str, Any]] = None,
        description: Optional[str] = None,
        seed: Optional[int] = None,
        max_trials: Optional[int] = None,
        parallel: Optional[int] = None,
        file: Optional[Union[str, "os.PathLike[str]"]] = None,
        load_if_exists: bool = False,
        client: Optional[Client] = None,
    ) -> "Study":
        """Submits a new study, from keyword arguments or from a study file (``file=``).

        From arguments: ``space`` maps parameter names to their TOML tables
        (``{"type": "float", "low": …, "high": …}``), ``objectives`` maps metrics to
        ``"minimize"``/``"maximize"`` (or is a list of ``{"metric", "direction"}``),
        ``constraints`` maps metrics to ``{"min": …, "max": …}``; ``strategy``, ``budget``,
        ``pruner`` and ``trial`` are the TOML tables of those names. ``max_trials`` (default 100)
        and ``parallel`` are shortcuts into ``budget``. Without ``trial`` the study is
        ``workload = "external"``: trials come from :meth:`ask`.

        From a file: its text is submitted as is (errors name the file and line); relative
        paths in it resolve against its directory. ``name`` then must match ``[study] name``
        (or be left out).

        With ``load_if_exists`` a study of that name already in the daemon is loaded instead
        of refused (like Optuna's).
        """
        client = client or Client()
        objective_names: Optional[List[str]] = None
        if file is not None:
            if space is not None or objectives is not None:
                raise ValueError("give file= or space=/objectives=, not both")
            path = os.fspath(file)
            with open(path, encoding="utf-8") as f:
                source = f.read()
            file_name = _study_name(source, path)
            if name is not None and file_name is not None and name != file_name:
                raise ValueError(
                    f'{path}: [study] name = "{file_name}" but Study.create was given "{name}"; '
                    "make them agree or leave name out"
                )
            name = name or file_name
            text, label, base = source, path, os.path.dirname(os.path.abspath(path))
        else:
            if name is None or space is None or objectives is None:
                raise ValueError("Study.create needs a name, space= and objectives= (or file=)")
            doc = definition(
                name, space, objectives, constraints, strategy, budget, pruner, trial,
                description, seed, max_trials, parallel,
            )
            text, label, base = _toml.dumps(doc), f"<study {name}>", os.getcwd()
            objective_names = [o["metric"] for o in doc["objective"]]
        try:
            summary = client.submit(text, file=label, base_dir=base)
        except ApiError as e:
            if load_if_exists and e.status == 409 and name is not None and "already exists" in e.message:
                return cls.load(name, client=client)
            raise
        study = cls(summary["name"], client)
        study._summary = summary
        study._objectives = objective_names
        return study

    @classmethod
    def load(cls, name: str, client: Optional[Client] = None) -> "Study":
        """A study the daemon already has (``ApiError`` 404 when it has none of that name)."""
        study = cls(name, client)
        study.refresh()
        return study

    # ---- reading ----

    def refresh(self) -> Dict[str, Any]:
        """Reads the study object again and returns it."""
        self._summary = self.client.study(self.name)
        return self._summary

    @property
    def summary(self) -> Dict[str, Any]:
        """The study object (``state``, ``counts``, ``best``, ``budget``, …), read now."""
        return self.refresh()

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``completed``, ``failed`` or ``cancelled``."""
        return str(self.refresh()["state"])

    @property
    def objectives(self) -> List[str]:
        """The objective metrics in the study file's order."""
        if self._objectives is None:
            first = json.loads(self.client.export(self.name).splitlines()[0])
            self._objectives = [o["metric"] for o in first["definition"]["objectives"]]
        return list(self._objectives)

    def trials(self) -> List[Dict[str, Any]]:
        """Every trial object by trial number."""
        return self.client.trials(self.name)

    def trial(self, number: int) -> Dict[str, Any]:
        """One trial object with its intermediate reports: ``{"trial": …, "reports": […]}``."""
        return self.client.trial(self.name, number)

    @property
    def best_trial(self) -> Optional[Dict[str, Any]]:
        """The best feasible trial object so far (None before any)."""
        return self.refresh().get("best")

    @property
    def best_params(self) -> Optional[Dict[str, Any]]:
        """The best feasible trial's parameters (None before any)."""
        best = self.best_trial
        return dict(best["params"]) if best else None

    @property
    def best_value(self) -> Optional[float]:
        """The best feasible trial's first objective value (None before any)."""
        best = self.best_trial
        if not best:
            return None
        return best["metrics"].get(self.objectives[0])

    def leaderboard(self, top: Optional[int] = None, frame: Optional[bool] = False) -> Any:
        """Leaderboard rows in display order, as dicts (``frame=False``, the default) or a
        pandas DataFrame (``frame=True``; ``None`` means: a DataFrame when pandas is importable).

        A frame has one row per trial with columns ``rank``, ``trial``, ``state``, ``feasible``,
        ``best``, ``params.NAME`` and ``metrics.NAME`` for every parameter and metric.
        """
        rows = self.client.leaderboard(self.name, top)
        if frame is False:
            return rows
        try:
            import pandas  # type: ignore[import-not-found,import-untyped]
        except ImportError:
            if frame is None:
                return rows
            raise ImportError(
                "leaderboard(frame=True) needs pandas (pip install pandas); "
                "leaderboard() returns plain dicts without it"
            ) from None
        return pandas.DataFrame([_flat(r) for r in rows])

    # ---- changing ----

    def pause(self) -> Dict[str, Any]:
        """No new trials; running ones go on."""
        self._summary = self.client.pause(self.name)
        return self._summary

    def resume(self) -> Dict[str, Any]:
        """Undoes :meth:`pause`."""
        self._summary = self.client.resume(self.name)
        return self._summary

    def cancel(self) -> Dict[str, Any]:
        """Cancels the study."""
        self._summary = self.client.cancel(self.name)
        return self._summary

    def enqueue(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Queues a configuration to be handed out before the strategy's next suggestion."""
        return self.client.enqueue(self.name, params)

    # ---- ask / tell ----

    def ask(self) -> Trial:
        """The next trial (now ``running``); ``ApiError`` 409 when none can be handed out."""
        reply = self.client.ask(self.name)
        return Trial(self, int(reply["trial"]), dict(reply["params"]))

    def report(self, trial: Union[Trial, int], step: int, **metrics: float) -> bool:
        """An intermediate report for ``trial``; True when the daemon pruned it."""
        if not metrics:
            raise ValueError("report needs at least one metric, e.g. report(t, 10, eval_loss=2.3)")
        return self.client.report(self.name, _number(trial), step, metrics)

    def tell(
        self,
        trial: Union[Trial, int],
        values: Optional[ObjectiveValue] = None,
        *,
        metrics: Optional[Mapping[str, float]] = None,
        failed: Optional[str] = None,
        infeasible: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Finishes ``trial``: with its objective ``values`` (a number, one per objective, or a
        dict of metrics), or ``metrics=``, or ``failed=``/``infeasible=`` reasons."""
        if values is not None:
            if metrics is not None:
                raise ValueError("give values or metrics=, not both")
            metrics = self._metrics(values)
        out = self.client.tell(self.name, _number(trial), metrics, failed, infeasible)
        if isinstance(trial, Trial):
            trial.finished = True
        return out

    def _metrics(self, values: ObjectiveValue) -> Dict[str, float]:
        if isinstance(values, Mapping):
            return {str(k): float(v) for k, v in values.items()}
        names = self.objectives
        if isinstance(values, (int, float)):
            if len(names) != 1:
                raise ValueError(
                    f"the objective returned one number but the study has {len(names)} "
                    f"objectives ({', '.join(names)}); return one per objective or a dict"
                )
            return {names[0]: float(values)}
        vals = [float(v) for v in values]
        if len(vals) != len(names):
            raise ValueError(
                f"the objective returned {len(vals)} values for {len(names)} objectives "
                f"({', '.join(names)})"
            )
        return dict(zip(names, vals))

    def optimize(
        self,
        objective: Callable[[Trial], Optional[ObjectiveValue]],
        n_trials: Optional[int] = None,
        timeout: Optional[float] = None,
        catch: Union[Type[BaseException], Tuple[Type[BaseException], ...]] = (),
        callbacks: Optional[Iterable[Callable[["Study", Trial], None]]] = None,
    ) -> None:
        """Runs ``objective(trial)`` on trials the daemon hands out, one after another, like
        Optuna's ``optimize``.

        The objective returns the objective value (a number for one objective, a sequence for
        several, or a dict of metrics that must name every objective and constraint metric),
        or finishes the trial itself (``trial.tell``/``infeasible``) and returns None. Raising
        :class:`TrialPruned` after ``trial.report`` returned True ends the trial as pruned. Any
        other exception marks the trial failed (with the exception as the reason) and is raised
        again, unless it is one of ``catch``. Stops after ``n_trials`` trials, after ``timeout``
        seconds, or when the study hands out no more (budget used, study finished).
        """
        started = time.monotonic()
        done = 0
        catch_t = catch if isinstance(catch, tuple) else (catch,)
        while n_trials is None or done < n_trials:
            if timeout is not None and time.monotonic() - started >= timeout:
                break
            try:
                t = self.ask()
            except ApiError as e:
                if e.status == 409 and self._exhausted():
                    break
                raise
            done += 1
            try:
                value = objective(t)
            except TrialPruned:
                if not t.pruned and not t.finished:
                    t.fail("the objective raised TrialPruned but the daemon had not pruned it")
            except Exception as e:  # noqa: BLE001 - recorded, then raised again or caught
                if not t.finished:
                    t.fail(f"{type(e).__name__}: {e}")
                if not isinstance(e, catch_t):
                    raise
            else:
                if not t.finished:
                    if value is None:
                        t.fail("the objective returned None and did not tell the trial")
                    else:
                        try:
                            _check_finite(value)
                            metrics = self._metrics(value)
                        except (TypeError, ValueError) as e:
                            t.fail(str(e))
                            raise
                        self.tell(t, metrics=metrics)
            for cb in callbacks or ():
                cb(self, t)

    def _exhausted(self) -> bool:
        s = self.refresh()
        if s["state"] != "running":
            return True
        return int(s["trials"]) >= int(s["max_trials"]) and not s["counts"].get("queued")


def _number(trial: Union[Trial, int]) -> int:
    return trial.number if isinstance(trial, Trial) else int(trial)


def _check_finite(value: ObjectiveValue) -> None:
    vals: Iterable[Any]
    if isinstance(value, Mapping):
        vals = value.values()
    elif isinstance(value, (int, float)):
        vals = [value]
    else:
        vals = value
    for v in vals:
        if not math.isfinite(float(v)):
            raise ValueError(f"the objective returned {v}: values must be finite")


def _flat(row: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k in ("rank", "trial", "state", "feasible", "best", "attempt", "duration_s", "reason"):
        if k in row:
            out[k] = row[k]
    for k, v in row.get("params", {}).items():
        out[f"params.{k}"] = v
    for k, v in row.get("metrics", {}).items():
        out[f"metrics.{k}"] = v
    for k, v in row.get("info", {}).items():
        out[f"info.{k}"] = v
    return out


def _study_name(source: str, path: str) -> Optional[str]:
    """``[study] name`` of a study file, or None when this Python cannot read TOML."""
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ImportError:
            return None
    try:
        doc = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    name = doc.get("study", {}).get("name")
    return str(name) if name is not None else None
