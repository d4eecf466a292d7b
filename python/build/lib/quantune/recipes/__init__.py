"""Complete trial scripts (``python -m quantune.recipes.NAME``); each needs its own packages."""
