"""Shared test set-up: a private kernel cache kept between runs, small batches.

The cache sits in the system's temporary directory (sticky, owned by root),
not in the checkout, whose parent directories may belong to someone else:
symjac refuses a cache that another user could write into.
"""

import os
import tempfile

_uid = os.geteuid() if hasattr(os, "geteuid") else "user"
os.environ.setdefault("SYMJAC_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"symjac-test-cache-{_uid}"))
os.environ.setdefault("SYMJAC_PROGRESS", "0")  # quiet: the progress tests switch it on themselves
# first calls compile Numba in-process, so the tests check the Numba kernels (tests/test_background.py
# switches the NumPy tier on)
os.environ.setdefault("SYMJAC_BACKGROUND_COMPILE", "0")

BACKENDS = ("numpy", "numba", "numba-parallel")
