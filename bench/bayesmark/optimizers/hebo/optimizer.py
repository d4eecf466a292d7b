"""HEBO (the NeurIPS 2020 BBO challenge winner, PyPI `HEBO`) as a Bayesmark optimizer:
`HEBO.suggest(n_suggestions)` gives the batch (MACE's Pareto front of EI/PI/UCB), `observe`
tells it. Variables as in `warp.py`: log reals and ints in HEBO's `pow`/`pow_int` types,
logit reals linear in the logit."""

import os
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import warp  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from bayesmark.abstract_optimizer import AbstractOptimizer  # noqa: E402
from bayesmark.experiment import experiment_main  # noqa: E402
from hebo.design_space.design_space import DesignSpace  # noqa: E402
from hebo.optimizers.hebo import HEBO  # noqa: E402


class HeboOptimizer(AbstractOptimizer):
    primary_import = "hebo"

    def __init__(self, api_config):
        AbstractOptimizer.__init__(self, api_config)
        warnings.filterwarnings("ignore")
        torch.set_num_threads(1)
        seed = int(np.random.randint(0, 2**31 - 1))
        torch.manual_seed(seed)
        self.variables = warp.variables(api_config)
        space = []
        for name, typ, spec in self.variables:
            if typ == "float":
                lo, hi, log = spec
                space.append({"name": name, "type": "pow" if log else "num", "lb": lo, "ub": hi})
            elif typ == "int":
                lo, hi, log = spec
                if log:
                    space.append({"name": name, "type": "pow_int", "lb": lo, "ub": hi})
                else:
                    space.append({"name": name, "type": "int", "lb": lo, "ub": hi})
            else:
                space.append({"name": name, "type": "cat", "categories": [str(v) for v in spec]})
        self.cats = {n: spec for n, t, spec in self.variables if t == "cat"}
        self.opt = HEBO(DesignSpace().parse(space), scramble_seed=seed)
        self.handed = []

    def suggest(self, n_suggestions=1):
        rec = self.opt.suggest(n_suggestions=n_suggestions)
        out = []
        for _, row in rec.iterrows():
            x = {}
            for name, typ, spec in self.variables:
                v = row[name]
                if typ == "cat":
                    v = next(c for c in spec if str(c) == v)
                x[name] = warp.to_value(self.api_config, name, v)
            out.append(x)
            self.handed.append((row, x))
        return out

    def observe(self, X, y):
        rows, ys = [], []
        for x, v in zip(X, y):
            k = next((i for i, (_, h) in enumerate(self.handed) if h is x), None)
            if k is None:
                k = next(i for i, (_, h) in enumerate(self.handed) if h == x)
            row, _ = self.handed.pop(k)
            v = float(v)
            rows.append(row)
            ys.append(v if np.isfinite(v) else 1e10)
        self.opt.observe(pd.DataFrame(rows).reset_index(drop=True), np.array(ys).reshape(-1, 1))


opt_wrapper = HeboOptimizer

if __name__ == "__main__":
    experiment_main(opt_wrapper)
