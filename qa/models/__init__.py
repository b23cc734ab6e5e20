"""Models shipped with the package (see qa/ranker.py)."""
