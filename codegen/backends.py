"""Compile printed programs into callables, cache them on disk, export them.

The source of every kernel is written to a real file in the cache directory
(``$SYMJAC_CACHE_DIR``, else ``~/.cache/symjac``) named by a hash of its text,
and imported from there: tracebacks show the generated line, and Numba's own
``cache=True`` keeps the machine code beside it, so a second process neither
prints nor compiles again.  `export` writes the same text to a file of the
user's choosing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codegen.printers import PRINTERS
from codegen.program import Program

__all__ = ["CompiledKernel", "compile_program", "print_program", "cache_dir", "numba_available",
           "BACKENDS", "export_source"]

BACKENDS = tuple(PRINTERS)
_LOADED: dict = {}


def numba_available():
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir():
    root = os.environ.get("SYMJAC_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "symjac")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class CompiledKernel:
    """A printed and loaded kernel: ``func(start, stop, *inputs, *outputs)``."""

    func: object
    source: str
    path: Path
    backend: str
    dtype: str


def print_program(program: Program, backend: str, dtype: str) -> str:
    if backend not in PRINTERS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return PRINTERS[backend](dtype).doprint(program)


def _versions():
    parts = [sys.version.split()[0]]
    for mod in ("numpy", "numba"):
        m = sys.modules.get(mod)
        parts.append(getattr(m, "__version__", "-"))
    return "/".join(parts)


def compile_program(program: Program, backend: str, dtype: str = "float64") -> CompiledKernel:
    """Print ``program`` for ``backend``, write it to the cache and load it."""
    if backend.startswith("numba"):
        if not numba_available():
            raise ImportError(f"backend {backend!r} needs numba; install it or use backend='numpy'")
        import numba  # noqa: F401  (so its version enters the key)
    source = print_program(program, backend, dtype)
    key = hashlib.sha256((source + _versions()).encode()).hexdigest()[:20]
    if key in _LOADED:
        return _LOADED[key]
    path = cache_dir() / f"k_{key}.py"
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    name = f"symjac_kernel_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Numba's cache finds the kernel's globals by module name
    spec.loader.exec_module(module)
    compiled = CompiledKernel(module.kernel, source, path, backend, dtype)
    _LOADED[key] = compiled
    return compiled


def export_source(source: str, path, wrapper: str = "") -> Path:
    """Write a kernel's source (plus an optional wrapper) as a standalone module."""
    path = Path(path)
    path.write_text(source + ("\n" + wrapper if wrapper else ""))
    return path
