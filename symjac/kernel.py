"""`Kernel`: a per-sample function traced once, lowered to a `codegen.Program`
(`symjac.lower`), compiled per dtype, and run over batches.

Arguments are checked before any work: count, numeric dtype, per-sample
shape, batch sizes, the slice and the ``out=`` buffers.
"""

from __future__ import annotations

import inspect
import math
import os
import threading

import numpy as np

from codegen import compile_program, numba_available
from codegen.backends import ParallelRunner
from codegen.cuda import is_device_array
from symjac.frontend.graph import flatten_tree, map_tree, unflatten
from symjac.frontend.trace import NOTE_PREFIX, trace_shapes
from symjac.frontend.traced import TracedArray
from symjac.ir import BUILDING, gc_paused, lookup, toposort, tree_size
from symjac.lower import lower
from symjac.progress import first_call, stage

__all__ = ["Kernel", "resolve_backend", "normalize_in_axes", "check_arguments", "graph_stats"]

BACKEND_NAMES = ("auto", "numba", "numba-parallel", "numpy", "cuda")


def resolve_backend(backend):
    if backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}, got {backend!r}")
    if backend == "cuda":
        from codegen.cuda import cuda_ready

        cuda_ready()  # no GPU: the error names the simulator option, before any tracing
        return backend
    if backend != "auto":
        return backend
    if not numba_available():
        return "numpy"
    return "numba-parallel" if (os.cpu_count() or 1) > 1 else "numba"


def graph_stats(graph):
    """Node counts before and after sharing, and estimated flops per sample."""
    roots = graph.output_nodes()
    nodes = toposort(roots)
    ops = [n for n in nodes if n.args]
    flops = 0
    for n in ops:
        info = lookup(n.op)
        flops += info.cost(n) if callable(info.cost) else info.cost * math.prod(n.shape)
    entries = sum(o.size for o in graph.outputs)
    zeros = sum(1 for n in roots if not n.shape and n.op == "const" and n.attr == 0.0)
    return {
        "tree_ops": tree_size(roots),
        "dag_ops": len(ops),
        "constants": sum(1 for n in nodes if n.op == "const"),
        "flops_per_sample": flops,
        "output_entries": entries,
        "structural_zeros": zeros,
    }


def normalize_in_axes(in_axes, nargs, where="in_axes"):
    if isinstance(in_axes, (bool, np.bool_)):
        raise TypeError(f"{where} must be an int, None, or a tuple of those, got {in_axes!r}")
    if in_axes is None or isinstance(in_axes, (int, np.integer)):
        axes = (in_axes,) * nargs
    elif isinstance(in_axes, (tuple, list)):
        if len(in_axes) != nargs:
            raise ValueError(f"{where} has {len(in_axes)} entries but the function was called with "
                             f"{nargs} positional arguments; give one entry per argument (None for shared)")
        axes = tuple(in_axes)
    else:
        raise TypeError(f"{where} must be an int, None, or a tuple of those, got {type(in_axes).__name__}")
    for a in axes:
        if a is not None and (not isinstance(a, (int, np.integer)) or isinstance(a, (bool, np.bool_))):
            raise TypeError(f"{where} entries must be int or None, got {a!r}")
    if all(a is None for a in axes):
        raise ValueError(f"{where} marks every argument as shared (None); at least one argument must "
                         "carry the batch axis")
    return axes


def refuse_container(a, label):
    """Tuples, lists and dicts are not arrays here: NumPy would stack a tuple of
    arrays into one array and its first axis would pass for the batch."""
    if isinstance(a, (tuple, list, dict)):
        kind = type(a).__name__
        raise TypeError(f"{label} is a {kind}; symjac takes one array per argument and does not "
                        f"stack a {kind} into an array (its first axis would pass for the batch). Pass "
                        "the parts as separate arguments, or one array (np.asarray / np.stack) if that is "
                        "what you mean")


def trace_note(checked, fn):
    """What each argument looked like to the traced function, for an error
    raised while tracing; with a hint when in_axes probably does not fit."""
    arrays, axes, batch, _, labels = checked
    name = (getattr(inspect.unwrap(fn), "__qualname__", None) or type(fn).__name__).replace("<locals>.", "")
    lines = [f"{NOTE_PREFIX}{name} for one sample, with these arguments:"]
    hints = []
    for i, (arr, ax) in enumerate(zip(arrays, axes)):
        if ax is None:
            lines.append(f"  {labels[i]}: shared (in_axes None: every sample gets the whole array), "
                         f"shape {arr.shape}")
            if batch not in (None, 0, 1) and batch in arr.shape:
                hints.append(f"{labels[i]} is shared but has an axis of the batch size {batch}: if it holds "
                             f"one entry per sample, give it in_axes 0 instead of None")
        else:
            lines.append(f"  {labels[i]}: batched along in_axes {ax} (batch size {batch}), one sample of "
                         f"shape {arr.shape[1:]}")
            if arr.ndim == 1:
                where = "its first axis" if ax == 0 else f"its axis {ax}"
                hints.append(f"{labels[i]}'s per-sample shape came out as (): {where} (size {batch}) is the "
                             f"batch (in_axes {ax}) and was its only axis, so each sample is a scalar; to "
                             f"evaluate one sample of shape ({batch},), give it a batch axis of size 1 "
                             f"(np.expand_dims(x, {ax}))")
    return "\n".join(lines + [f"hint: {h}" for h in hints])


class _Labels:
    """Argument labels for error messages ("argument 1 ('k')"), made on demand:
    inspecting a signature costs more than a small batch's whole call."""

    def __init__(self, fn):
        self.fn = fn
        self._names = None

    def __getitem__(self, i):
        if self._names is None:
            try:
                params = list(inspect.signature(self.fn).parameters.values())
            except (TypeError, ValueError):
                params = []
            self._names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return f"argument {i} ({self._names[i]!r})" if i < len(self._names) else f"argument {i}"


def check_arguments(fn, args, in_axes):
    """Validated (arrays with batch axis first, axes, batch size, result dtype, labels)."""
    axes = normalize_in_axes(in_axes, len(args))
    labels = _Labels(fn)
    arrays, batch, first = [], None, None
    for i, (a, ax) in enumerate(zip(args, axes)):
        if isinstance(a, TracedArray):
            raise TypeError(f"{labels[i]} is a traced value; internal error: use the traced path")
        if isinstance(a, (tuple, list, dict)):  # (labels are made only for an error: they cost)
            refuse_container(a, labels[i])
        if is_device_array(a):
            arr = _device_argument(a, ax, labels[i])
        else:
            arr = a if isinstance(a, np.ndarray) else np.asarray(a)
        if arr.dtype.kind == "c":
            raise TypeError(f"{labels[i]} is complex ({arr.dtype}); symjac kernels are real-valued")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{labels[i]} must be a real numeric array, got dtype {arr.dtype}")
        if ax is not None:
            if not -arr.ndim <= ax < arr.ndim:
                raise ValueError(f"in_axes puts the batch axis of {labels[i]} at {ax}, but it has only "
                                 f"{arr.ndim} dimension(s) (shape {arr.shape})")
            arr = np.moveaxis(arr, ax, 0) if ax and isinstance(arr, np.ndarray) else arr
            if batch is None:
                batch, first = arr.shape[0], i
            elif arr.shape[0] != batch:
                raise ValueError(f"{labels[i]} has batch size {arr.shape[0]} but {labels[first]} has {batch}; "
                                 "batched arguments must have the same batch size")
        arrays.append(arr)
    dtype = np.float32 if all(arr.dtype == np.float32 for arr in arrays) else np.float64
    return arrays, axes, batch, np.dtype(dtype), labels


def batches_nothing(in_axes):
    """Whether ``in_axes`` marks no argument as batched (None, or all entries None):
    calls then take one sample and return per-sample shapes, as ``jax.jacfwd``."""
    return in_axes is None or (isinstance(in_axes, (tuple, list)) and len(in_axes) > 0
                               and all(a is None for a in in_axes))


class OneSample:
    """One-sample calls of a kernel or transform made with ``in_axes=None``.

    The sample is run as a batch of one (every argument batched) and the batch
    axis is dropped from the results.  After the first call with a signature
    (each argument an ndarray of some shape and dtype), later calls with that
    signature and no ``out=`` skip the checks and wrappers: they reshape the
    arguments, allocate the outputs and call the compiled function directly
    (a few microseconds in all; `benchmarks/one_sample.py`).
    """

    def __init__(self, batched_call, fast_for):
        self.batched_call = batched_call  # (arrays with a batch axis of 1, out) -> batched results
        self.fast_for = fast_for  # (arrays with a batch axis of 1) -> fast callable or None
        self.fast = {}

    def lookup(self, args):
        """The fast callable for ``args`` (ndarrays and plain numbers of a signature seen before), or None."""
        sig = _signature(args)
        return None if sig is None else self.fast.get(sig)

    def __call__(self, args, out=None):
        sig = _signature(args)
        if out is None and sig is not None:
            call = self.fast.get(sig)
            if call is not None:
                return call(args)
        arrays = []
        for i, a in enumerate(args):
            if isinstance(a, (tuple, list, dict)):
                refuse_container(a, f"argument {i}")
            arrays.append(np.asarray(a)[None])
        outs = None
        if out is not None:
            bufs = list(out) if isinstance(out, (tuple, list)) else [out]
            for k, b in enumerate(bufs):
                if not isinstance(b, np.ndarray):
                    raise TypeError(f"out[{k}] must be a NumPy array, got {type(b).__name__}")
            outs = [b[None] for b in bufs]
            outs = outs if isinstance(out, (tuple, list)) else outs[0]
        result = self.batched_call(arrays, outs)
        if out is None and sig is not None and len(self.fast) < 64:
            call = self.fast_for(arrays)
            if call is not None:
                self.fast[sig] = call
        if out is not None:
            return out
        return _drop_batch(result)


_SCALARS = {float: ((), np.dtype(np.float64)), np.float64: ((), np.dtype(np.float64)),
            int: ((), np.dtype(np.int64)), np.float32: ((), np.dtype(np.float32))}


def _signature(args):
    """((shape, dtype), ...) of ndarrays and plain numbers (SciPy's ``t``); None for
    anything else (traced values, lists, subclasses: the full path)."""
    sig = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            sig.append((a.shape, a.dtype))
        else:
            s = _SCALARS.get(t)
            if s is None:
                return None
            sig.append(s)
    return tuple(sig)


def _drop_batch(tree):
    return map_tree(lambda x: x[0] if isinstance(x, np.ndarray) else x, tree)


def _prefix_axes(entry, arg, where):
    """Per-leaf batch axes of one argument: an int or None for all its leaves, or a
    tree of them matching the argument's structure (a prefix), as ``jax.vmap``."""
    if entry is None or (isinstance(entry, (int, np.integer)) and not isinstance(entry, bool)):
        return [entry] * len(flatten_tree(arg)[0])
    if isinstance(entry, (tuple, list)) and isinstance(arg, (tuple, list)) and len(entry) == len(arg):
        return [x for k, (e, a) in enumerate(zip(entry, arg)) for x in _prefix_axes(e, a, f"{where}[{k}]")]
    if isinstance(entry, dict) and isinstance(arg, dict) and set(entry) == set(arg):
        return [x for k in arg for x in _prefix_axes(entry[k], arg[k], f"{where}[{k!r}]")]
    raise ValueError(f"{where} is {entry!r}, which does not match its argument (a {type(arg).__name__}): give an "
                     "int or None for the whole argument, or a tuple, list or dict of the argument's shape")


def flatten_args(args):
    """(leaves, defs) of arguments that may be trees: ``defs`` holds (treedef, leaf
    count) per argument, as `rebuild_trees` takes it."""
    leaves, defs = [], []
    for a in args:
        ls, d = flatten_tree(a)
        leaves += ls
        defs.append((d, len(ls)))
    return leaves, defs


def rebuild_trees(defs, leaves):
    """The arguments rebuilt from their leaves (``defs``: (treedef, leaf count) per argument)."""
    rebuilt, i = [], 0
    for d, n in defs:
        rebuilt.append(unflatten(d, leaves[i: i + n]))
        i += n
    return rebuilt


def tree_call(owner, args, make):
    """A call of ``owner`` (a transform or kernel) whose arguments include tuples,
    lists or dicts: their leaves become the arguments of a variant made by
    ``make(flat_fn, leaf_in_axes, defs)`` (one per argument structure; ``defs``
    as `rebuild_trees` takes them), whose traced function rebuilds the trees.
    Returns ``call(out, start, stop)``."""
    flat, defs = flatten_args(args)
    given = owner._given_axes
    if batches_nothing(given):
        axes = None
    else:
        entries = given if isinstance(given, (tuple, list)) else (given,) * len(args)
        if len(entries) != len(args):
            raise ValueError(f"in_axes has {len(entries)} entries but the function was called with {len(args)} "
                             "positional arguments; give one entry per argument (None for shared)")
        axes = tuple(x for i, (e, a) in enumerate(zip(entries, args)) for x in _prefix_axes(e, a, f"in_axes[{i}]"))
    key = (tuple(defs), axes)
    variants = owner.__dict__.setdefault("_trees", {})
    variant = variants.get(key)
    if variant is None:
        fn = owner._traced if hasattr(owner, "_traced") else owner.fn

        def flat_fn(*leaves):
            return fn(*rebuild_trees(defs, leaves))

        flat_fn.__name__ = flat_fn.__qualname__ = getattr(fn, "__name__", "f")
        variant = variants[key] = make(flat_fn, axes, defs)

    def call(out=None, start=0, stop=None):
        return variant(*flat, out=out, start=start, stop=stop)

    return call


def _static_key(v):
    """A key for a keyword argument's value: numbers by value (floats by their
    bits), strings, arrays by dtype, shape and a copy of their bytes, tuples,
    lists and dicts by their items; any other object by identity (held)."""
    if isinstance(v, float):
        return (float, v.hex())
    if v is None or isinstance(v, (bool, int, complex, str, bytes)):
        return (type(v), v)
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.asarray(v)
        return ("array", a.dtype.str, a.shape, a.tobytes())
    if isinstance(v, (tuple, list)):
        return (type(v),) + tuple(_static_key(e) for e in v)
    if isinstance(v, dict):
        return (dict,) + tuple((_static_key(k), _static_key(e)) for k, e in v.items())
    return ("object", id(v), v)


def static_variant(owner, static):
    """``owner`` (a transform or kernel of ``f``) for ``f`` with the keyword
    arguments ``static`` bound (static values, as ``jax.jit``'s
    ``static_argnames``), made once per distinct set of values."""
    import functools

    if getattr(owner, "_remake", None) is None:
        raise TypeError(f"{owner.name} takes no keyword arguments (got {', '.join(sorted(static))})")
    try:
        key = tuple(sorted((k, _static_key(v)) for k, v in static.items()))
        hash(key)
    except TypeError:
        key = None  # an unhashable object: a variant of its own, not kept
    cache = owner.__dict__.setdefault("_statics", {})
    found = cache.get(key) if key is not None else None
    if found is None:
        f = owner._remake_f
        found = owner._remake(functools.wraps(f)(functools.partial(f, **static)))
        if key is not None:
            cache[key] = found
            if len(cache) > 64:
                cache.pop(next(iter(cache)))
    return found


def _device_argument(a, ax, label):
    """A GPU array argument as a Numba device array (no copy); only the CUDA
    backend takes them (`Kernel.run` checks), with the batch axis first."""
    from codegen.cuda import as_device

    d = as_device(a)
    if ax is not None and ax % max(1, d.ndim) != 0:
        raise ValueError(f"{label} is a GPU array with its batch axis at in_axes {ax}; GPU arrays must carry "
                         "the batch on their first axis (in_axes 0): move it there on the device first")
    if d.ndim and not d.is_c_contiguous():
        raise ValueError(f"{label} is a GPU array that is not C-contiguous; pass a contiguous copy")
    return d


class Kernel:
    """A compiled batch kernel for a per-sample function.

    Built by `symjac.compile`; traced on its first call (per-sample shapes are
    then fixed) and compiled once per dtype.  ``kernel(*args, out=None,
    start=0, stop=None)`` evaluates samples ``[start, stop)``; ``out`` gives
    the output buffers (shape ``(B, *out_shape)``, C-contiguous, the result
    dtype), which are filled in place and returned.  An ``out`` buffer may
    overlap an input (``k(X, out=X)``): that input is copied first, so the
    result is as if every input were read before any output is written, as
    for NumPy's ufuncs.  Two outputs may not share memory (``ValueError``).
    Outputs that are sums over the batch (`adopt`'s ``reduced``, ``dlfeval``'s
    losses) come back without a batch axis, summed over ``[start, stop)``.
    The first call traces; calls from several threads are safe (one traces
    and compiles, the others wait).

    >>> import numpy as np, symjac
    >>> k = symjac.compile(lambda x: np.sin(x) * x[0], backend="numpy")
    >>> k(np.ones((4, 2))).shape
    (4, 2)
    >>> k.stats["dag_ops"]
    4
    """

    def __init__(self, fn, *, in_axes=0, backend="auto", name=None):
        if not callable(fn):
            raise TypeError(f"expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self._given_axes = in_axes
        self.one_sample = OneSample(self._batched, self._fast_for) if batches_nothing(in_axes) else None
        self.in_axes = 0 if self.one_sample is not None else in_axes  # one sample: a batch of one
        self.backend = resolve_backend(backend)
        self.name = name or getattr(fn, "__name__", "kernel")
        self.graph = None  # set last: a kernel whose graph is set is fully traced
        self._shapes = None
        self._axes = None
        self._compiled = {}
        self._program = None
        self._hidden_cache = {}
        self._fast = {}  # signature -> fast batched call (`fast_batched`)
        self.reduced = frozenset()
        self._lock = threading.RLock()  # first compiles from several threads: one compiles, the others wait

    # -- tracing ---------------------------------------------------------
    def specialize(self, shapes, axes, checked=None):
        """Trace for per-sample ``shapes``; ``axes[k] is None`` marks shared args.

        ``checked`` (from `check_arguments`) lets an error raised while tracing
        say what each argument looked like to the function.
        """
        note = (lambda: trace_note(checked, self.fn)) if checked is not None else None
        with BUILDING:
            with stage("trace, differentiate"):
                graph = trace_shapes(self.fn, shapes, note)
            return self.adopt(graph, axes)

    def adopt(self, graph, axes, reduced=()):
        """Use the traced ``graph`` (one input per argument, ``axes[k] is None``
        for shared ones); outputs in ``reduced`` are sums over the batch
        (``dlfeval``'s losses), which come back without a batch axis."""
        reduced = frozenset(reduced)
        with BUILDING, stage("lower"):
            program = lower(graph, [a is not None for a in axes], self.name, reduced)
        with self._lock:
            self._shapes = tuple(tuple(leaf.shape) for leaf in graph.inputs)
            self._axes = tuple(axes)
            self.reduced = reduced
            self._program = program
            self._hidden_cache = {}
            self._compiled = {}
            self.graph = graph
        return self

    def _compile(self, dtype, samples=None):
        """The compiled kernel for ``dtype``; for a slice of ``samples`` samples at
        most a quarter of its tile, the one-sample-per-tile variant (compiled
        on first need): a tiled kernel runs whole tiles, so a SciPy-style
        call on one state would otherwise pay for the tile (16x on a
        200-point least-squares Jacobian)."""
        key = np.dtype(dtype).name
        compiled = self._get(key)
        if samples is not None and compiled.tile > 1 and 4 * samples <= compiled.tile:
            compiled = self._get(key, 1)
        return compiled

    def _get(self, key, tile=None):
        compiled = self._compiled.get((key, tile))
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get((key, tile))
                if compiled is None:
                    with stage("print"), gc_paused():
                        compiled = self._compiled[key, tile] = compile_program(self._program, self.backend,
                                                                               key, tile)
        return compiled

    # -- inspection ------------------------------------------------------
    def _need_trace(self, what):
        if self.graph is None:
            raise RuntimeError(f"Kernel.{what} is known after the first call (the kernel is traced "
                               "for the shapes it is first called with)")

    @property
    def source(self):
        """The generated Python source (float64 unless only float32 was compiled)."""
        self._need_trace("source")
        dtype = next(iter(self._compiled), ("float64",))[0]
        return self._compile(dtype).source

    @property
    def path(self):
        """The kernel's source file in the cache (None when it runs from memory)."""
        self._need_trace("path")
        return self._compile(next(iter(self._compiled), ("float64",))[0]).path

    @property
    def program(self):
        self._need_trace("program")
        return self._program

    @property
    def stats(self):
        """Counts: ``tree_ops`` (as trees, no sharing), ``dag_ops`` (after CSE and
        simplification), ``flops_per_sample``, ``statements``, output entries and
        structural zeros."""
        self._need_trace("stats")
        s = graph_stats(self.graph)
        s["statements"] = len(self._program.body) + len(self._program.stores)
        return s

    def export(self, path, *, backend=None, dtype=None):
        """Write this kernel as one standalone module at ``path`` (a ``.py`` file)
        that needs only NumPy (and Numba for the Numba backends): its
        ``evaluate(*args, out=None, start=0, stop=None)`` does what calling
        the kernel does, with the same checks; its docstring says what the
        arguments and outputs are.  ``backend``: this kernel's by default
        (``"numba"``, ``"numba-parallel"`` or ``"numpy"``); ``dtype``: the one
        compiled first, else float64.  The same model and options give the
        same bytes.  Returns the path.

        >>> import numpy as np, symjac, tempfile, os, importlib.util
        >>> k = symjac.compile(lambda x: np.sin(x) * x[0], backend="numpy")
        >>> X = np.ones((4, 2))
        >>> _ = k(X)
        >>> path = k.export(os.path.join(tempfile.mkdtemp(), "sinx.py"))
        >>> spec = importlib.util.spec_from_file_location("sinx", path)
        >>> mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        >>> bool(np.array_equal(mod.evaluate(X), k(X)))
        True
        """
        from symjac.export import export_kernel

        self._need_trace("export")
        dtype = dtype or next(iter(self._compiled), ("float64",))[0]
        return export_kernel(self, path, backend=backend, dtype=dtype, title=self.name,
                             one_sample=self.one_sample is not None)

    # -- running ---------------------------------------------------------
    _remake = None  # g -> a kernel of g with the same options (set by symjac.compile)

    def __call__(self, *args, out=None, start=0, stop=None, **static):
        if static:  # keyword arguments: static values, one kernel per distinct set (with_static)
            return static_variant(self, static)(*args, out=out, start=start, stop=stop)
        if any(isinstance(a, (tuple, list, dict)) for a in args):  # argument trees: a kernel on their leaves
            return tree_call(self, args, lambda flat_fn, axes, defs: Kernel(
                flat_fn, in_axes=axes, backend=self.backend, name=self.name))(out, start, stop)
        if self.one_sample is not None:
            if out is None and start == 0 and stop is None:
                call = self.one_sample.lookup(args)
                if call is not None:
                    return call(args)
            if (start, stop) != (0, None):
                raise TypeError("start and stop slice a batch; this kernel takes one sample (in_axes=None)")
            return self.one_sample(args, out)
        if out is None and start == 0 and stop is None:
            sig = _signature(args)
            call = self._fast.get(sig) if sig is not None else None
            if call is not None:
                return call(args)
            checked = check_arguments(self.fn, args, self.in_axes)
            result = self.run(checked)
            if sig is not None and len(self._fast) < 64:
                call = self.fast_batched(checked)
                if call is not None:
                    self._fast[sig] = call
            return result
        return self.run(check_arguments(self.fn, args, self.in_axes), out=out, start=start, stop=stop)

    def _batched(self, arrays, out):
        return self.run(check_arguments(self.fn, arrays, 0), out=out)

    def _fast_for(self, arrays):
        return self.fast_one_sample(check_arguments(self.fn, arrays, 0))

    def fast_batched(self, checked):
        """A callable ``(args) -> results`` for batched calls with the signature of
        ``checked`` (whole batch, no ``out=``) that skips the checks, or None
        (batch axes other than 0, batch sums, an empty batch, or the kernel has
        not run yet)."""
        arrays, axes, batch, dtype, labels = checked
        if self.reduced or self.graph is None or not batch or any(ax not in (0, None) for ax in axes):
            return None
        compiled = self._compile(dtype, batch)
        if not compiled.ran:
            return None
        func, hidden, dt, B = compiled.func, self._hidden(dtype), dtype, batch
        sizes = [(math.prod(a.shape[1:]) if ax is not None else a.size, ax) for a, ax in zip(arrays, axes)]
        outs = [(math.prod(o.shape), (batch,) + tuple(o.shape)) for o in self.graph.outputs]
        treedef = self.graph.treedef

        def call(args):
            ins = []
            for a, (n, ax) in zip(args, sizes):
                c = a if type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous else \
                    np.ascontiguousarray(a, dt)
                ins.append(c.reshape(B, n) if ax is not None else c.reshape(-1))
            bufs = [np.empty((B, m), dt) for m, _ in outs]
            func(0, B, *ins, *hidden, *bufs)
            if treedef == "*":
                return bufs[0].reshape(outs[0][1])
            return unflatten(treedef, [b.reshape(shape) for b, (_, shape) in zip(bufs, outs)])

        return call

    def fast_one_sample(self, checked):
        """A callable ``(args) -> results`` for one sample of the signature of
        ``checked`` (a batch of one), or None when this kernel needs the full
        path (batch sums); made after the kernel ran once."""
        arrays, axes, batch, dtype, labels = checked
        if self.reduced or self.graph is None:
            return None
        compiled = self._compile(dtype, 1)
        if not compiled.ran:
            return None
        func = compiled.func
        if isinstance(func, ParallelRunner):
            func = func.func  # one sample: one thread
        if getattr(func, "checked", False):
            func = func.func  # a Numba kernel past its first call: the dispatcher itself
        hidden = self._hidden(dtype)
        sizes = [a[0].size for a in arrays]
        outs = [(math.prod(o.shape), tuple(o.shape)) for o in self.graph.outputs]
        treedef, dt = self.graph.treedef, dtype

        def call(args, bufs=None):  # bufs: (1, m) output rows to fill (default: new arrays)
            ins = [a.reshape(1, n) if type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous else
                   np.ascontiguousarray(a, dt).reshape(1, n) for a, n in zip(args, sizes)]
            if bufs is None:
                bufs = [np.empty((1, m), dt) for m, _ in outs]
            func(0, 1, *ins, *hidden, *bufs)  # a scalar output comes back as a NumPy scalar, as on the full path
            if treedef == "*":
                return bufs[0].reshape((1,) + outs[0][1])[0]
            return unflatten(treedef, [b.reshape((1,) + shape)[0] for b, (_, shape) in zip(bufs, outs)])

        return call

    def run(self, checked, *, out=None, start=0, stop=None):
        """`__call__` on arguments already passed through `check_arguments`."""
        if self.graph is not None:
            return self._run(checked, out, start, stop)
        with first_call(self.name):  # a first call: its stages are reported when it takes long
            return self._run(checked, out, start, stop)

    def _run(self, checked, out, start, stop):
        arrays, axes, batch, dtype, labels = checked
        shapes = [arr.shape[1:] if ax is not None else arr.shape for arr, ax in zip(arrays, axes)]
        start, stop = self._check_slice(start, stop, batch)  # before any tracing work
        if self.graph is None:
            # one thread traces, the others wait; BUILDING (held by every trace) is the
            # only lock taken around a trace, so traces that call kernels cannot deadlock
            with BUILDING:
                if self.graph is None:
                    self.specialize(shapes, axes, checked)
        self._check_signature(shapes, axes, labels)
        device = [i for i, a in enumerate(arrays) if not isinstance(a, np.ndarray)]
        if out is not None and self.backend == "cuda":
            device += [-1] if any(not isinstance(o, np.ndarray) for o in
                                  (out if isinstance(out, (tuple, list)) else [out])) else []
        if device and self.backend != "cuda":
            raise TypeError(f"{labels[device[0]]} is a GPU array, but this kernel runs on the CPU (backend "
                            f"{self.backend!r}); use backend='cuda', or copy it to the host")
        if device:
            return self._run_device(arrays, axes, batch, dtype, labels, out, start, stop)
        outs = self._outputs(out, batch, dtype)
        ins = []
        for arr, ax in zip(arrays, axes):
            c = np.ascontiguousarray(arr, dtype=dtype)
            if out is not None and any(np.may_share_memory(c, o) for o in outs):
                c = c.copy()  # out= overlaps this input: read it before anything is written
            ins.append(c.reshape(batch, math.prod(c.shape[1:])) if ax is not None else c.reshape(-1))
        ins += self._hidden(dtype)
        for k in self.reduced:
            outs[k][...] = 0  # a batch sum over [start, stop) starts from zero
        if stop == start:  # no sample: nothing to compile or run
            return unflatten(self.graph.treedef, outs)
        compiled = self._compile(dtype, stop - start)
        flat_outs = [o.reshape(-1) if k in self.reduced else o.reshape(batch, math.prod(o.shape[1:]))
                     for k, o in enumerate(outs)]
        if compiled.ran:
            compiled.func(start, stop, *ins, *flat_outs)
        else:
            detail = f"{self.backend}, {len(self._program.body)} statements" + \
                (f", tiles of {compiled.tile} samples" if compiled.tile > 1 else "")
            with first_call(self.name), stage("compile, first run", detail):
                compiled.func(start, stop, *ins, *flat_outs)
            compiled.ran = True
        return unflatten(self.graph.treedef, outs)

    def _run_device(self, arrays, axes, batch, dtype, labels, out, start, stop):
        """`_run` with GPU arrays among the arguments or ``out``: inputs stay on the
        device (host ones are copied there), outputs are device arrays."""
        from codegen.cuda import as_device, cuda_module

        cuda = cuda_module()
        ins = []
        for i, (arr, ax) in enumerate(zip(arrays, axes)):
            if isinstance(arr, np.ndarray):
                arr = cuda.to_device(np.ascontiguousarray(arr, dtype=dtype))
            elif arr.dtype != dtype:
                raise TypeError(f"{labels[i]} is a GPU array of dtype {arr.dtype}, but this call computes in "
                                f"{dtype} (every argument float32 gives float32, else float64); convert it "
                                "on the device first")
            ins.append(arr.reshape(batch, math.prod(arr.shape[1:])) if ax is not None else arr.reshape(-1))
        ins += self._device_hidden(dtype)
        shapes = [o.shape if k in self.reduced else (batch,) + o.shape for k, o in enumerate(self.graph.outputs)]
        if out is None:
            outs = [cuda.device_array(s, dtype=dtype) for s in shapes]
        else:
            given = list(out) if isinstance(out, (tuple, list)) else [out]
            if len(given) != len(shapes):
                raise ValueError(f"out= must hold {len(shapes)} array(s), one per output, got {len(given)}")
            outs = []
            for k, (b, s) in enumerate(zip(given, shapes)):
                d = as_device(b) if not isinstance(b, np.ndarray) else None
                if d is None:
                    raise TypeError(f"out[{k}] is a host array while other arguments are on the GPU; give "
                                    "device buffers (or none)")
                if tuple(d.shape) != tuple(s) or d.dtype != dtype or not d.is_c_contiguous():
                    raise ValueError(f"out[{k}] must be a C-contiguous GPU array of shape {s} and dtype {dtype}, "
                                     f"got {tuple(d.shape)} {d.dtype}")
                outs.append(d)
        for k in self.reduced:
            outs[k].copy_to_device(np.zeros(outs[k].shape, dtype=dtype))  # a batch sum starts from zero
        flat_outs = [o.reshape(math.prod(o.shape)) if k in self.reduced else
                     o.reshape(batch, math.prod(o.shape[1:])) for k, o in enumerate(outs)]
        compiled = self._compile(dtype)
        if compiled.ran:
            compiled.func(start, stop, *ins, *flat_outs)
        else:
            with first_call(self.name), stage("compile, first run", f"cuda, {len(self._program.body)} statements"):
                compiled.func(start, stop, *ins, *flat_outs)
            compiled.ran = True
        result = outs if out is None else (list(out) if isinstance(out, (tuple, list)) else [out])
        return unflatten(self.graph.treedef, result)

    def _device_hidden(self, dtype):
        """The model's constant tensors on the device (copied once per dtype)."""
        key = ("device", np.dtype(dtype).name)
        if key not in self._hidden_cache:
            from codegen.cuda import cuda_module

            cuda = cuda_module()
            self._hidden_cache[key] = [cuda.to_device(h) for h in self._hidden(dtype)]
        return self._hidden_cache[key]

    def _hidden(self, dtype):
        """The model's constant tensors, flat, in the kernel's dtype (made once)."""
        key = np.dtype(dtype).name
        if key not in self._hidden_cache:
            self._hidden_cache[key] = [np.ascontiguousarray(c, dtype=dtype if c.dtype.kind == "f" else c.dtype)
                                       .reshape(-1) for c in self._program.hidden_inputs]
        return self._hidden_cache[key]

    def _check_signature(self, shapes, axes, labels):
        if tuple(a is None for a in axes) != tuple(a is None for a in self._axes):
            raise ValueError("in_axes changed between calls: which arguments are shared must stay fixed")
        if len(shapes) != len(self._shapes):
            raise TypeError(f"kernel was traced with {len(self._shapes)} arguments, got {len(shapes)}")
        for i, (s, t) in enumerate(zip(shapes, self._shapes)):
            if tuple(s) != tuple(t):
                raise ValueError(f"{labels[i]} has per-sample shape {tuple(s)}, but this kernel was traced "
                                 f"for {tuple(t)}; compile a new kernel for new shapes")

    @staticmethod
    def _check_slice(start, stop, batch):
        stop = batch if stop is None else stop
        for name, v in (("start", start), ("stop", stop)):
            if not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if not 0 <= start <= stop <= batch:
            raise ValueError(f"need 0 <= start <= stop <= batch size {batch}, got start={start}, stop={stop}")
        return int(start), int(stop)

    def _outputs(self, out, batch, dtype):
        shapes = [o.shape if k in self.reduced else (batch,) + o.shape for k, o in enumerate(self.graph.outputs)]
        if out is None:
            return [np.zeros(s, dtype=dtype) if k in self.reduced else np.empty(s, dtype=dtype)
                    for k, s in enumerate(shapes)]
        bufs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(bufs) != len(shapes):
            raise ValueError(f"out= must hold {len(shapes)} array(s), one per output, got {len(bufs)}")
        for k, (b, s) in enumerate(zip(bufs, shapes)):
            if not isinstance(b, np.ndarray):
                raise TypeError(f"out[{k}] must be a NumPy array, got {type(b).__name__}")
            if b.shape != s or b.dtype != dtype:
                raise ValueError(f"out[{k}] must have shape {s} and dtype {dtype}, got {b.shape} {b.dtype}")
            if not b.flags.c_contiguous or not b.flags.writeable:
                raise ValueError(f"out[{k}] must be C-contiguous and writeable")
            for j in range(k):
                if np.may_share_memory(b, bufs[j]):  # exact for C-contiguous buffers
                    raise ValueError(f"out[{j}] and out[{k}] share memory; give each output a buffer of its own")
        return bufs

    def __repr__(self):
        state = "not traced yet" if self.graph is None else f"{len(self.graph)} operations"
        return f"<symjac.Kernel {self.name!r} backend={self.backend!r}, {state}>"
