"""A Hugging Face ``transformers.TrainerCallback`` for quantune (needs ``transformers``).

::

    from quantune.integrations.transformers import QuantuneCallback

    trainer = Trainer(..., callbacks=[QuantuneCallback()])
    trainer.train()

Each evaluation's metrics (``eval_loss``, …) are reported at the trainer's global step. Inside
a trial the daemon starts (``workload = "command"``) they go to the trial protocol's metrics
file, and training stops when the daemon asks the trial to stop (SIGTERM on pruning); with a
:class:`quantune.Trial` from ``Study.ask`` (ask/tell) they go to the daemon's API, and training
stops when the answer is prune. Either way ``callback.pruned`` tells afterwards.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Optional

from transformers import TrainerCallback  # type: ignore[import-not-found,import-untyped]

from .. import trial as protocol
from ..study import Trial

__all__ = ["QuantuneCallback"]

# Evaluation bookkeeping the Trainer adds to every metrics dict; not worth a learning curve.
_BOOKKEEPING = ("epoch", "_runtime", "_samples_per_second", "_steps_per_second")


class QuantuneCallback(TrainerCallback):  # type: ignore[misc]
    """Reports every evaluation to quantune and stops training when the trial is pruned.

    ``trial``: a :class:`quantune.Trial` (ask/tell); None means the trial protocol of a trial
    the daemon started. ``metrics``: the evaluation metrics to report (default: every finite
    number except the Trainer's timing and ``epoch``).
    """

    def __init__(self, trial: Optional[Trial] = None, metrics: Optional[Iterable[str]] = None):
        self.trial = trial
        self.metrics = list(metrics) if metrics is not None else None
        self.pruned = False
        self.reports = 0
        if trial is None:
            # Installs the SIGTERM handler now, before the daemon could send it.
            protocol.should_prune()

    def _pick(self, metrics: Dict[str, Any]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for k, v in metrics.items():
            if self.metrics is not None:
                if k not in self.metrics:
                    continue
            elif k == "epoch" or k.endswith(_BOOKKEEPING):
                continue
            if isinstance(v, bool):
                continue
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                out[k] = f
        if self.metrics is not None:
            missing = [m for m in self.metrics if m not in out]
            if missing:
                raise ValueError(
                    f"QuantuneCallback: the evaluation has no finite {', '.join(missing)} "
                    f"(it has {', '.join(sorted(metrics)) or 'nothing'})"
                )
        return out

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> Any:
        """Reports the evaluation; sets ``control.should_training_stop`` when pruned."""
        values = self._pick(dict(metrics or {}))
        if values:
            step = int(state.global_step)
            if self.trial is not None:
                prune = self.trial.report(step, **values)
            else:
                protocol.report(step, **values)
                prune = protocol.should_prune()
            self.reports += 1
            if prune:
                self.pruned = True
        if self.pruned or (self.trial is None and protocol.should_prune()):
            self.pruned = True
            control.should_training_stop = True
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
        """Stops training at the next step once the daemon asked the trial to stop."""
        if self.trial is None and protocol.should_prune():
            self.pruned = True
            control.should_training_stop = True
        return control
