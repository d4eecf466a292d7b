"""The benchmark problems: search spaces, objective functions and the best known values.

Each problem is a dict:
  name        short name ([a-z0-9_-])
  space       {param: spec}; spec is ("float", low, high, log) | ("int", low, high) |
              ("cat", [choices])
  objectives  [(metric, "minimize"|"maximize")]
  constraints [(metric, min_or_None, max_or_None)]
  evaluate    params dict -> metrics dict
  best        best known value of the (single) objective, or None (then the best value any
              method found is used, as Bayesmark does); multi-objective: the hypervolume of the
              true front
  reference   multi-objective only: the hypervolume reference point (losses)
"""

import math

import numpy as np


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
    r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
    return {"loss": a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s}


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p):
    x = np.array([p[f"x{i}"] for i in range(6)])
    inner = np.sum(_H6_A * (x - _H6_P) ** 2, axis=1)
    return {"loss": float(-np.sum(_H6_ALPHA * np.exp(-inner)))}


def ackley5(p):
    x = np.array([p[f"x{i}"] for i in range(5)])
    d = len(x)
    v = (-20 * math.exp(-0.2 * math.sqrt(np.sum(x**2) / d))
         - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e)
    return {"loss": float(v)}


def rosenbrock4(p):
    x = np.array([p[f"x{i}"] for i in range(4)])
    return {"loss": float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))}


_FORMAT_PENALTY = {"bf16": 0.6, "int8": 0.0, "int4": 0.9, "nf4": 0.3}


def mixed(p):
    """A QAT-shaped toy: a log learning rate, an integer warm-up, an ordinal batch size and a
    categorical format that interacts with the learning rate."""
    lr, warm, bs, fmt = p["lr"], p["warmup"], p["batch"], p["format"]
    shift = {"bf16": 0.0, "int8": 0.3, "int4": -0.4, "nf4": 0.2}[fmt]
    v = ((math.log10(lr) + 3.0 + shift) ** 2 + ((warm - 12) / 8.0) ** 2
         + 0.5 * (math.log2(bs) - 5) ** 2 / 4 + _FORMAT_PENALTY[fmt])
    return {"loss": v}


def gardner(p):
    """Gardner et al. (2014), problem 1: minimize cos(2x1)cos(x2) + sin(x1) subject to
    cos(x1 + x2) <= 0.5 (written as cos x1 cos x2 - sin x1 sin x2)."""
    x1, x2 = p["x1"], p["x2"]
    return {"loss": math.cos(2 * x1) * math.cos(x2) + math.sin(x1),
            "c": math.cos(x1) * math.cos(x2) - math.sin(x1) * math.sin(x2)}


def _gardner_best():
    g = np.linspace(0, 6, 3001)
    x1, x2 = np.meshgrid(g, g)
    f = np.cos(2 * x1) * np.cos(x2) + np.sin(x1)
    c = np.cos(x1) * np.cos(x2) - np.sin(x1) * np.sin(x2)
    return float(np.min(np.where(c <= 0.5, f, np.inf)))


ZDT1_DIM = 6


def zdt1(p):
    x = np.array([p[f"x{i}"] for i in range(ZDT1_DIM)])
    f1 = x[0]
    g = 1 + 9 * np.sum(x[1:]) / (len(x) - 1)
    return {"f1": float(f1), "f2": float(g * (1 - math.sqrt(f1 / g)))}


def _zdt1_front_hv(ref):
    # Front f2 = 1 - sqrt(f1), f1 in [0, 1]: area between the front and the reference box.
    f1 = np.linspace(0, 1, 200001)
    f2 = 1 - np.sqrt(f1)
    return float(np.trapezoid(ref[1] - f2, f1) + (ref[0] - 1) * ref[1])


DTLZ2_DIM = 6


def dtlz2(p):
    x = np.array([p[f"x{i}"] for i in range(DTLZ2_DIM)])
    g = float(np.sum((x[2:] - 0.5) ** 2))
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return {"f1": (1 + g) * math.cos(a) * math.cos(b),
            "f2": (1 + g) * math.cos(a) * math.sin(b),
            "f3": (1 + g) * math.sin(a)}


# --- scikit-learn tuning problems (cross-validated, deterministic folds) ---------------------

_CACHE = {}


def _data(name):
    if name not in _CACHE:
        from sklearn import datasets
        loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
                  "diabetes": datasets.load_diabetes, "digits": datasets.load_digits}[name]
        x, y = loader(return_X_y=True)
        _CACHE[name] = (x, y)
    return _CACHE[name]


def _cv(model, data, scoring, classify=True):
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    x, y = _data(data)
    folds = (StratifiedKFold if classify else KFold)(n_splits=5, shuffle=True, random_state=0)
    return float(np.mean(cross_val_score(model, x, y, cv=folds, scoring=scoring)))


def svm_cancer(p):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    model = make_pipeline(StandardScaler(), SVC(C=p["C"], gamma=p["gamma"]))
    return {"error": 1 - _cv(model, "breast_cancer", "accuracy")}


def enet_diabetes(p):
    import warnings
    from sklearn.linear_model import ElasticNet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ElasticNet(alpha=p["alpha"], l1_ratio=p["l1_ratio"], max_iter=2000)
        return {"mse": -_cv(model, "diabetes", "neg_mean_squared_error", classify=False)}


def knn_wine(p):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    scaler = StandardScaler() if p["scaler"] == "standard" else MinMaxScaler()
    model = make_pipeline(scaler, KNeighborsClassifier(
        n_neighbors=p["k"], weights=p["weights"], p=p["p"]))
    return {"error": 1 - _cv(model, "wine", "accuracy")}


def tree_digits(p):
    from sklearn.tree import DecisionTreeClassifier
    model = DecisionTreeClassifier(max_depth=p["max_depth"], min_samples_split=p["min_split"],
                                   min_samples_leaf=p["min_leaf"], criterion=p["criterion"],
                                   max_features=p["max_features"], random_state=0)
    return {"error": 1 - _cv(model, "digits", "accuracy")}


def _cube(n, low, high, prefix="x"):
    return {f"{prefix}{i}": ("float", low, high, False) for i in range(n)}


def all_problems():
    return [
        dict(name="branin", space={"x1": ("float", -5.0, 10.0, False),
                                   "x2": ("float", 0.0, 15.0, False)},
             objectives=[("loss", "minimize")], constraints=[], evaluate=branin, best=0.397887),
        dict(name="hartmann6", space=_cube(6, 0.0, 1.0), objectives=[("loss", "minimize")],
             constraints=[], evaluate=hartmann6, best=-3.32237),
        dict(name="ackley5", space=_cube(5, -32.768, 32.768), objectives=[("loss", "minimize")],
             constraints=[], evaluate=ackley5, best=0.0),
        dict(name="rosenbrock4", space=_cube(4, -5.0, 10.0), objectives=[("loss", "minimize")],
             constraints=[], evaluate=rosenbrock4, best=0.0),
        dict(name="mixed", space={"lr": ("float", 1e-5, 1e-1, True), "warmup": ("int", 0, 40),
                                  "batch": ("int_values", [8, 16, 32, 64, 128, 256]),
                                  "format": ("cat", ["bf16", "int8", "int4", "nf4"])},
             objectives=[("loss", "minimize")], constraints=[], evaluate=mixed, best=0.0),
        dict(name="gardner", space={"x1": ("float", 0.0, 6.0, False),
                                    "x2": ("float", 0.0, 6.0, False)},
             objectives=[("loss", "minimize")], constraints=[("c", None, 0.5)], evaluate=gardner,
             best=_gardner_best()),
        dict(name="svm-cancer", space={"C": ("float", 1e-3, 1e3, True),
                                       "gamma": ("float", 1e-5, 1e1, True)},
             objectives=[("error", "minimize")], constraints=[], evaluate=svm_cancer, best=None),
        dict(name="enet-diabetes", space={"alpha": ("float", 1e-5, 10.0, True),
                                          "l1_ratio": ("float", 0.0, 1.0, False)},
             objectives=[("mse", "minimize")], constraints=[], evaluate=enet_diabetes, best=None),
        dict(name="knn-wine", space={"k": ("int", 1, 50), "p": ("int", 1, 3),
                                     "weights": ("cat", ["uniform", "distance"]),
                                     "scaler": ("cat", ["standard", "minmax"])},
             objectives=[("error", "minimize")], constraints=[], evaluate=knn_wine, best=None),
        dict(name="tree-digits", space={"max_depth": ("int", 2, 30), "min_split": ("int", 2, 40),
                                        "min_leaf": ("int", 1, 20),
                                        "criterion": ("cat", ["gini", "entropy"]),
                                        "max_features": ("float", 0.1, 1.0, False)},
             objectives=[("error", "minimize")], constraints=[], evaluate=tree_digits, best=None),
        dict(name="zdt1", space=_cube(ZDT1_DIM, 0.0, 1.0),
             objectives=[("f1", "minimize"), ("f2", "minimize")], constraints=[], evaluate=zdt1,
             reference=[1.1, 1.1], best=_zdt1_front_hv([1.1, 1.1])),
        dict(name="dtlz2", space=_cube(DTLZ2_DIM, 0.0, 1.0),
             objectives=[("f1", "minimize"), ("f2", "minimize"), ("f3", "minimize")],
             constraints=[], evaluate=dtlz2, reference=[1.1, 1.1, 1.1],
             best=1.1**3 - math.pi / 6),
    ]


def hypervolume(points, reference):
    """Exact hypervolume of loss vectors (2-D sweep; 3-D by slicing along the last axis)."""
    pts = [p for p in points if all(x < r for x, r in zip(p, reference))]
    if not pts:
        return 0.0
    if len(reference) == 2:
        pts.sort()
        area, best = 0.0, reference[1]
        for x, y in pts:
            if y < best:
                area += (reference[0] - x) * (best - y)
                best = y
        return area
    pts.sort(key=lambda p: p[-1])
    vol = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else reference[-1]
        if top > p[-1]:
            vol += (top - p[-1]) * hypervolume([q[:-1] for q in pts[: i + 1]], reference[:-1])
    return vol
