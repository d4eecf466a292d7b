"""Kept for scripts that copied it: the trial protocol now lives in the ``quantune`` package.

``pip install ./python`` and write ``from quantune import trial`` (docs/PYTHON.md). This file
re-exports ``quantune.trial`` — the installed package when there is one, else the copy in this
checkout's ``python/`` folder — so ``import quantune_trial as qt`` keeps working.
"""

import os
import sys

try:
    from quantune.trial import *  # noqa: F401,F403
    from quantune.trial import __all__  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    from quantune.trial import *  # noqa: F401,F403
    from quantune.trial import __all__  # noqa: F401
