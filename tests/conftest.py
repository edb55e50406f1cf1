"""Shared test set-up: a kernel cache inside the checkout, small batches."""

import os
from pathlib import Path

os.environ.setdefault("SYMJAC_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".symjac-cache"))

BACKENDS = ("numpy", "numba", "numba-parallel")
