"""Tracing entry points: make leaves, call a function on traced arrays, and
collect its outputs into a `Graph`."""

from __future__ import annotations

import contextvars
import numbers

import numpy as np

from symjac.errors import NumericArrayError
from symjac.frontend.graph import Graph, outputs_of, unflatten
from symjac.frontend.library import is_routable, library_error, object_array_error, routed
from symjac.frontend.traced import TracedArray, end_exposure_scope, exposure_scope
from symjac.ir import BUILDING, make_inputs

__all__ = ["trace", "trace_shapes", "call_traced", "own_arguments", "not_own", "make_inputs", "outputs_of", "unflatten", "NOTE_PREFIX"]

NOTE_PREFIX = "symjac traced "  # the innermost trace's note is the one kept


# The arguments a trace's own function was called with (fresh leaves nothing
# else can reach); empty inside a call a model makes itself.
_OWN = contextvars.ContextVar("symjac_own_arguments", default=())


def own_arguments():
    """The traced arguments the running trace passed to its function, while
    that function runs (not inside a transform the model calls itself)."""
    return _OWN.get()


def not_own():
    """A context in which no argument is a trace's own (a model's own call)."""
    return _Own(())


class _Own:
    def __init__(self, args):
        self.args = args

    def __enter__(self):
        self.token = _OWN.set(self.args)

    def __exit__(self, *exc):
        _OWN.reset(self.token)


def call_traced(f, arrays, note=None, own=False):
    """Call ``f`` on traced copies of the leaf ``arrays``.  An error raised
    while tracing gets ``note()`` (what the arguments looked like) as a note.
    With ``own``, the arrays are the trace's fresh leaves (`own_arguments`)."""
    try:
        try:
            return _call(f, arrays, own)
        except Exception as e:
            if not is_routable(e):
                raise
            return _call(f, arrays, own)  # the model imported the library while tracing: routed now
    except Exception as e:
        if note is not None and not any(n.startswith(NOTE_PREFIX) for n in getattr(e, "__notes__", ())):
            e.add_note(note())
        raise


def _call(f, arrays, own):
    try:
        args = [TracedArray(a.copy()) for a in arrays]
        with _Own(tuple(args) if own else ()), routed():
            return f(*args)
    except Exception as e:
        # NumPy storing a traced value (a sequence to it) into an array of numbers
        if isinstance(e, ValueError) and "setting an array element with a sequence" in str(e):
            raise NumericArrayError() from e
        named = library_error(e, f) or object_array_error(e)  # name the library function, or the object array
        if named is not None:
            raise named from e
        raise


def _shape_of(example):
    if isinstance(example, tuple) and all(isinstance(s, numbers.Integral) for s in example):
        return tuple(int(s) for s in example)
    if isinstance(example, TracedArray):
        return example.shape
    arr = np.asarray(example)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"example argument of dtype {arr.dtype}: give a shape tuple or a real array")
    return arr.shape


def trace(f, *examples):
    """Trace the per-sample function ``f`` into a `Graph`.

    Each example is a shape tuple or an array whose shape is used (its values
    are not).

    >>> import numpy as np, symjac
    >>> g = symjac.trace(lambda x, y: x * y + np.sin(x), (2,), (2,))
    >>> len(g)
    6
    """
    if not callable(f):
        raise TypeError(f"trace: f must be callable, got {type(f).__name__}")
    return trace_shapes(f, [_shape_of(e) for e in examples])


def trace_shapes(f, shapes, note=None):
    """The `Graph` of ``f`` called on fresh traced arrays of ``shapes`` (holding
    `BUILDING`); ``note()`` describes the arguments for an error (`call_traced`)."""
    with BUILDING:
        inputs = make_inputs(shapes)
        token = exposure_scope()
        try:
            outputs, treedef = outputs_of(call_traced(f, inputs, note, own=True), whole=True)
        finally:
            end_exposure_scope(token)
        return Graph(inputs, outputs, treedef=treedef)


