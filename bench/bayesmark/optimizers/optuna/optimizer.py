"""Optuna (TPESampler or GPSampler, defaults) as a Bayesmark optimizer, through ask/tell: a
batch of n_suggestions trials is asked before any is told (the earlier ones are `RUNNING`
while the later ones are sampled, as with parallel workers)."""

import math
import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import warp  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from bayesmark.abstract_optimizer import AbstractOptimizer  # noqa: E402
from bayesmark.experiment import experiment_main  # noqa: E402


class OptunaOptimizer(AbstractOptimizer):
    primary_import = "optuna"

    def __init__(self, api_config, sampler="tpe"):
        AbstractOptimizer.__init__(self, api_config)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore")
        seed = int(np.random.randint(0, 2**31 - 1))
        if sampler == "gp":
            import torch
            torch.set_num_threads(1)
            s = optuna.samplers.GPSampler(seed=seed)
        else:
            s = optuna.samplers.TPESampler(seed=seed)
        self.study = optuna.create_study(direction="minimize", sampler=s)
        self.variables = warp.variables(api_config)
        self.handed = []

    def suggest(self, n_suggestions=1):
        out = []
        for _ in range(n_suggestions):
            t = self.study.ask()
            x = {}
            for name, typ, spec in self.variables:
                if typ == "float":
                    v = t.suggest_float(name, spec[0], spec[1], log=spec[2])
                elif typ == "int":
                    v = t.suggest_int(name, spec[0], spec[1], log=spec[2])
                else:
                    v = t.suggest_categorical(name, spec)
                x[name] = warp.to_value(self.api_config, name, v)
            self.handed.append((t, x))
            out.append(x)
        return out

    def observe(self, X, y):
        for x, v in zip(X, y):
            k = next((i for i, (_, h) in enumerate(self.handed) if h is x), None)
            if k is None:
                k = next(i for i, (_, h) in enumerate(self.handed) if h == x)
            t, _ = self.handed.pop(k)
            v = float(v)
            if math.isfinite(v):
                self.study.tell(t, v)
            else:
                self.study.tell(t, state=optuna.trial.TrialState.FAIL)


opt_wrapper = OptunaOptimizer

if __name__ == "__main__":
    experiment_main(opt_wrapper)
