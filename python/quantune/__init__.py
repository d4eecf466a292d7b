"""quantune from Python: the trial protocol, and a client of the daemon's API.

Two ways to use it (docs/PYTHON.md):

* Inside a trial the daemon starts (``workload = "command"``): :mod:`quantune.trial` reads the
  parameters and writes the metric lines (``trial.params()``, ``trial.report(step, …)``,
  ``trial.final(…)``).
* Driving a study from Python (``workload = "external"``): :class:`Study` creates or loads a
  study, hands out trials (``ask``), takes their results (``tell``) and runs an objective
  function over them (``optimize``); :class:`Client` is the plain API underneath.

The package needs nothing beyond the standard library. ``quantune.integrations.transformers``
(needs ``transformers``) reports a ``Trainer``'s evaluations and stops it when pruned;
``quantune.recipes.torchao_qat`` (needs ``torch``, ``transformers`` and ``torchao``) is a
complete QAT fine-tune-and-benchmark trial.
"""

from . import trial
from .client import ApiError, Client, DaemonUnreachable
from .study import Study, Trial, TrialPruned

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "Client",
    "DaemonUnreachable",
    "Study",
    "Trial",
    "TrialPruned",
    "trial",
    "__version__",
]
