"""MATLAB-style batched differentiation: `dlfeval` and the ``dljacobian`` family.

Inside ``dlfeval(fn, *args, batch_axis=...)`` each array argument is a
`BatchedArray` (`symjac.frontend.batched`): its full batched shape over one
sample's graph.  The operators follow MATLAB R2024b with 0-based ``dim``:
``dljacobian(u, x, dim)``, ``dldivergence(u, x, dim)``,
``dllaplacian(u, x, dim)``, ``dlgradient(y, *xs)``.
``enable_higher_derivatives=False`` makes the result a constant for any later
differentiation.  The per-sample graph is compiled once per (shapes, dtypes,
batch axes) into one kernel.
"""

from __future__ import annotations

import hashlib
import math
import threading
import types
from collections import OrderedDict

import numpy as np

from codegen.cuda import is_device_array
from symjac.ad import jacobian_nodes, laplacian_nodes
from symjac.frontend.batched import BatchedArray, BatchMixingError, Reduced, inverse_batch, node_array
from symjac.frontend.graph import Graph, Whole, flatten_tree, unflatten
from symjac.frontend.trace import call_traced, make_inputs
from symjac.frontend.traced import _nodes
from symjac.ir import BUILDING, ZERO, Node, evaluate_nodes, make, toposort
from symjac.kernel import Kernel, refuse_container, resolve_backend
from symjac.progress import first_call, stage

__all__ = ["BatchedArray", "Reduced", "dlfeval", "dljacobian", "dldivergence", "dllaplacian", "dlgradient",
           "BatchMixingError"]


def dlgradient(y, *xs, enable_higher_derivatives=False):
    """Gradient of the scalar ``y`` with respect to each of ``xs`` (same shapes).

    ``y`` is typically a loss summed or averaged over the batch.  For a batched
    ``x`` the gradient is per sample (only sample b's term depends on x_b); for
    a shared ``x`` (weights) it is the sum over the batch, reduced inside the
    kernel.  With ``enable_higher_derivatives=False`` (MATLAB's default) the
    result is a constant for later differentiation.

    >>> import numpy as np, symjac
    >>> def loss(X, w):
    ...     L = np.mean((w @ X) ** 2)
    ...     return L, symjac.dlgradient(L, w)
    >>> X = np.array([[1.0, 2.0], [0.0, 1.0]])
    >>> symjac.dlfeval(loss, X, np.array([1.0, 1.0]), batch_axis=(-1, None), backend="numpy")
    (array(5.), array([7., 3.]))
    """
    if not xs:
        raise TypeError("dlgradient needs at least one x")
    if any(isinstance(x, (tuple, list, dict)) for x in xs):  # trees of weights: gradients in the same trees
        flat, defs = [], []
        for x in xs:
            leaves, d = flatten_tree(x)
            flat += leaves
            defs.append((d, len(leaves)))
        res = dlgradient(y, *flat, enable_higher_derivatives=enable_higher_derivatives)
        res = res if len(flat) > 1 else (res,)
        out, i = [], 0
        for d, n in defs:
            out.append(unflatten(d, list(res[i: i + n])))
            i += n
        return tuple(out) if len(out) > 1 else out[0]
    if isinstance(y, BatchedArray):
        if y.bpos is not None:
            raise ValueError(f"dlgradient: y must be a scalar, got per-sample values of shape {y.shape}; "
                             "reduce them over the batch first (np.sum or np.mean)")
        terms, offset, batch = None, y.nodes, y.batch
    elif isinstance(y, Reduced):
        terms, offset, batch = y.terms, y.offset, y.batch
    else:
        raise TypeError(f"dlgradient: y must be a traced value inside symjac.dlfeval, got {type(y).__name__}")
    if (terms if terms is not None else offset).shape != ():
        raise ValueError(f"dlgradient: y must be a scalar, got shape {(terms if terms is not None else offset).shape}")
    for k, x in enumerate(xs):
        if not isinstance(x, BatchedArray):
            raise TypeError(f"dlgradient: x number {k} must be a traced array inside symjac.dlfeval, "
                            f"got {type(x).__name__}")
    roots = [r[()] for r in (terms, offset) if r is not None]
    wholes = _whole_variables(roots, xs)
    variables = [n for x, w in zip(xs, wholes) for n in ((w,) if w is not None else x.nodes.ravel())]
    gt = jacobian_nodes([terms[()]], variables, "rev")[0] if terms is not None else None
    go = jacobian_nodes([offset[()]], variables, "rev")[0] if offset is not None else None
    results, c = [], 0
    for x, w in zip(xs, wholes):
        size = 1 if w is not None else x.nodes.size
        shape = x.nodes.shape

        def part(g):
            if g is None:
                return None
            if w is None:
                return _freeze(node_array(g[c: c + size].reshape(shape)), enable_higher_derivatives)
            return _whole_gradient(g[c], shape, enable_higher_derivatives)

        part_t, part_o = part(gt), part(go)
        c += size
        whole = None
        if isinstance(part_t, Node):  # the gradient tensor of a whole argument: entries made if asked for
            whole, part_t = part_t, (None if x.bpos is None else _entries(part_t, shape))
        if isinstance(part_o, Node):
            part_o = _entries(part_o, shape)
        if x.bpos is not None:
            if part_o is not None and any(n is not ZERO for n in part_o.ravel()):
                raise AssertionError("a batch-free offset cannot depend on batched data")
            results.append(BatchedArray(part_t if part_t is not None else node_array(np.full(shape, ZERO)),
                                        x.bpos, x.batch))
        elif part_t is None and whole is None:
            results.append(BatchedArray(part_o, None, batch))
        else:
            results.append(Reduced(part_t, part_o, batch, whole=whole))
    return tuple(results) if len(results) > 1 else results[0]


# -- the operators -------------------------------------------------------------

def _check_batched(v, name):
    if not isinstance(v, BatchedArray):
        raise TypeError(f"{name} must be a traced array inside symjac.dlfeval, got {type(v).__name__}")


def _check_u(u, dim, what):
    _check_batched(u, "u")
    if u.ndim != 2:
        raise ValueError(f"{what}: u must be 2-D (channels x batch), got shape {u.shape}")
    if dim not in (0, 1):
        raise ValueError(f"{what}: dim must be 0 or 1 (0-based; MATLAB's dim=1 is dim=0), got {dim!r}")
    if u.bpos != 1 - dim:
        raise ValueError(f"{what}: dim={dim} makes axis {1 - dim} of u its batch axis, but u's batch axis is "
                         f"{u.bpos}; use dim={1 - u.bpos}" if u.bpos is not None else
                         f"{what}: u has no batch axis")


def _check_x(u, x, what):
    _check_batched(x, "x")
    if x.bpos is not None and x.batch != u.batch:
        raise ValueError(f"{what}: x has batch size {x.batch} but u has {u.batch}")


def _whole_variables(roots, xs):
    """Per x, the tensor node to differentiate by instead of its entries, or None.

    An argument held whole (a weight matrix in ``W @ X``) reaches the graph as
    one ``pack`` of its input leaves: its gradient is the adjoint of that pack,
    one tensor, instead of one derivative per leaf (a 512 x 512 layer:
    262,144).  Only when the leaves feed nothing but that pack, so that the
    pack's adjoint is the whole gradient; and only when each of its leaves is
    one entry of one x (``dlgradient(L, W, W[0])`` or ``W[[0, 0, 1]]`` keep
    one derivative per entry: a variable is a cut point of the sweep, so a
    leaf shared with another x would lose the paths through it)."""
    count = {}
    for x in xs:
        for n in x.nodes.ravel():
            count[n.id] = count.get(n.id, 0) + 1
    candidates = {}
    for k, x in enumerate(xs):
        flat = x.nodes.ravel()
        if flat.size >= 2 and all(n.op == "input" and count[n.id] == 1 for n in flat):
            candidates[tuple(n.id for n in flat)] = k
    found = [None] * len(xs)
    if not candidates:
        return found
    order = toposort(roots)
    leaves = {i for ids in candidates for i in ids}
    packs, other_use = {}, set()
    for node in order:
        if not node.args:
            continue
        if node.op == "pack":
            ids = tuple(a.id for a in node.args)
            k = candidates.get(ids)
            if k is not None:
                packs.setdefault(k, []).append(node)
                continue
        for a in node.args:
            if a.id in leaves:
                other_use.add(a.id)
    for ids, k in candidates.items():
        if len(packs.get(k, ())) == 1 and not other_use.intersection(ids):
            found[k] = packs[k][0]
    return found


def _whole_gradient(g, shape, enable):
    """The gradient of a whole argument from the adjoint ``g`` of its pack: a
    tensor node of ``shape`` (stopped unless ``enable``), or an object array
    when it is a structural zero or has another shape."""
    if not g.shape:  # a symbolic zero: no dependence
        return node_array(np.full(shape, g, dtype=object))
    if not enable:
        g = make("stop", g)
    return g if g.shape == tuple(shape) else _entries(g, shape)


def _entries(g, shape):
    """The entries of tensor ``g`` as an object array of ``shape``."""
    return Whole(g).ravel().reshape(shape)


def _freeze(nodes, enable):
    if enable or not nodes.size:
        return nodes
    flat = nodes.ravel()
    t = flat[0].args[0] if flat[0].op == "elem" else None
    if t is not None and flat.size == math.prod(t.shape) and all(
            n.op == "elem" and n.attr == i and n.args[0] is t for i, n in enumerate(flat)):
        # the entries of one tensor, in order (a weight gradient): stop the tensor once
        return _entries(make("stop", t), nodes.shape)
    return node_array(np.frompyfunc(lambda n: make("stop", n), 1, 1)(nodes))


def dljacobian(u, x, dim, *, enable_higher_derivatives=True):
    """Jacobian of the 2-D batched ``u`` (operation axis ``dim``) with respect
    to ``x``: shape ``(u.shape[dim],) + x.shape``, entry ``[i, j...]`` =
    d u_i / d x_j within each sample (MATLAB ``dljacobian`` with 0-based dim).

    >>> import numpy as np, symjac
    >>> def model(X):
    ...     U = np.sin(X) * X[0]
    ...     return symjac.dljacobian(U, X, 0)
    >>> symjac.dlfeval(model, np.array([[0.0, 1.0], [2.0, 3.0]]), backend="numpy").shape
    (2, 2, 2)
    """
    _check_u(u, dim, "dljacobian")
    _check_x(u, x, "dljacobian")
    if x.bpos is None:
        raise ValueError("dljacobian: x has no batch axis; x must be batched like u (for shared "
                         "parameters the derivative of a batch-reduced loss is dlgradient's job)")
    J = jacobian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()), "auto")
    J = _freeze(J.reshape((u.nodes.size,) + x.nodes.shape), enable_higher_derivatives)
    return BatchedArray(node_array(J), 1 + x.bpos, u.batch)


def dldivergence(u, x, dim, *, enable_higher_derivatives=True):
    """Per-sample divergence sum_i d u_i / d x_i; u's shape with ``u.shape[dim]``
    replaced by 1.  x must hold as many elements per sample as u has channels."""
    _check_u(u, dim, "dldivergence")
    _check_x(u, x, "dldivergence")
    if x.bpos is None or x.nodes.size != u.nodes.size:
        raise ValueError(f"dldivergence: x must be batched with {u.nodes.size} elements per sample (u's channel "
                         f"count), got shape {x.shape}")
    J = jacobian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()), "fwd")
    total = ZERO
    for i in range(J.shape[0]):
        total = make("add", total, J[i, i])
    nodes = _freeze(node_array(total).reshape((1,)), enable_higher_derivatives)
    return BatchedArray(node_array(nodes), u.bpos, u.batch)


def dllaplacian(u, x, dim, *, enable_higher_derivatives=True):
    """Per sample and per component of ``u``, the sum of the second derivatives
    with respect to every non-batch element of ``x`` (forward Laplacian); shape of u."""
    _check_u(u, dim, "dllaplacian")
    _check_x(u, x, "dllaplacian")
    if x.bpos is None:
        raise ValueError("dllaplacian: x must be a batched argument")
    L, _ = laplacian_nodes(list(u.nodes.ravel()), list(x.nodes.ravel()))
    nodes = _freeze(np.array(L, dtype=object).reshape(u.nodes.shape), enable_higher_derivatives)
    return BatchedArray(node_array(nodes), u.bpos, u.batch)


# -- dlfeval -----------------------------------------------------------------------

# Traced kernels by (function_key(fn), shapes, axes, batch, dtypes, backend), least
# recently used dropped first: a lambda re-created in a loop with equal captured
# values is one key; an evicted entry or a new batch size only costs a retrace
# (compiled code is cached by its source, which depends on neither).
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()  # guards the dict only; traces hold BUILDING


def _cached(key):
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is not None:
            _CACHE.move_to_end(key)
        return entry


def _normalize_batch_axes(batch_axis, args):
    axes = batch_axis if isinstance(batch_axis, (tuple, list)) else (batch_axis,) * len(args)
    if len(axes) != len(args):
        raise ValueError(f"batch_axis has {len(axes)} entries for {len(args)} arguments")
    out = []
    for k, (a, ax) in enumerate(zip(args, axes)):
        refuse_container(a, f"argument {k}")
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"argument {k} must be a real numeric array, got dtype {arr.dtype}")
        if arr.dtype.kind != "f":
            raise TypeError(f"argument {k} holds {arr.dtype} data; traced data must be floating point, as for "
                            "MATLAB's dlarray: convert it with .astype(np.float64) (or float32)")
        if ax is None:
            out.append(None)
            continue
        if not -arr.ndim <= ax < arr.ndim:
            raise ValueError(f"batch_axis {ax} is out of range for argument {k} of shape {arr.shape}")
        out.append(ax % arr.ndim)
    if all(ax is None for ax in out):
        raise ValueError("batch_axis marks every argument as shared; at least one must carry the batch axis")
    return out


def dlfeval(fn, *args, batch_axis=-1, backend="auto"):
    """Evaluate ``fn`` on batched data with MATLAB ``dlfeval`` semantics.

    Each array argument is traced with its full batched shape; ``batch_axis``
    (an int for all, or one entry per argument, ``None`` for shared weights)
    says where its batch axis is; the default, the last axis, matches
    MATLAB's "CB"/"SSCB" layouts.  The per-sample computation is compiled
    once per (shapes, dtypes, batch axes) and run over the batch; results come
    back as NumPy arrays, in the tuples and lists ``fn`` returned them in
    (MATLAB's multiple outputs; nesting such as ``return loss,
    dlgradient(loss, W, b)`` is kept).  First calls from several threads are
    safe: one traces, the others wait.

    >>> import numpy as np, symjac
    >>> W = np.array([[1.0, 2.0], [0.0, 1.0]])
    >>> X = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])          # "CB": 2 channels, 3 samples
    >>> Y, J = symjac.dlfeval(lambda X, W: (np.tanh(W @ X), symjac.dljacobian(np.tanh(W @ X), X, 0)),
    ...                       X, W, batch_axis=(-1, None), backend="numpy")
    >>> Y.shape, J.shape
    ((2, 3), (2, 2, 3))
    """
    if not callable(fn):
        raise TypeError(f"dlfeval: fn must be callable, got {type(fn).__name__}")
    if any(isinstance(a, (tuple, list, dict)) for a in args):  # argument trees: dlfeval of their leaves
        leaves, flat_fn, leaf_axes = _flat_call(fn, args, batch_axis)
        return dlfeval(flat_fn, *leaves, batch_axis=leaf_axes, backend=backend)
    key, arrays, axes, per_shapes, B = _dlfeval_key(fn, args, batch_axis, backend)
    entry = _cached(key)
    if entry is None:
        with first_call(getattr(fn, "__name__", "fn")):  # stages reported when it takes long
            return _dlfeval_run(_dlfeval_cold(fn, key, per_shapes, axes, B, backend), arrays, axes, B)
    return _dlfeval_run(entry, arrays, axes, B)


def _flat_call(fn, args, batch_axis):
    """(leaves, fn of the leaves, batch axis per leaf) for arguments that are trees:
    a ``batch_axis`` entry covers its whole argument, or is a tree of its shape."""
    from symjac.kernel import _prefix_axes, flatten_args, rebuild_trees

    leaves, defs = flatten_args(args)
    entries = batch_axis if isinstance(batch_axis, (tuple, list)) else (batch_axis,) * len(args)
    if len(entries) != len(args):
        raise ValueError(f"batch_axis has {len(entries)} entries for {len(args)} arguments")
    axes = tuple(x for i, (e, a) in enumerate(zip(entries, args)) for x in _prefix_axes(e, a, f"batch_axis[{i}]"))

    def flat_fn(*ls):
        return fn(*rebuild_trees(defs, ls))

    flat_fn.__name__ = getattr(fn, "__name__", "fn")
    return leaves, flat_fn, axes


def _dlfeval_key(fn, args, batch_axis, backend):
    """(cache key, arrays, batch axes, per-sample shapes, batch size) of a dlfeval call."""
    for k, a in enumerate(args):
        if is_device_array(a):
            raise TypeError(f"dlfeval: argument {k} is a GPU array; dlfeval takes NumPy arrays (with "
                            "backend='cuda' it computes on the GPU and returns NumPy arrays). For GPU arrays in "
                            "and out, use symjac.compile or the transforms with backend='cuda'")
    axes = _normalize_batch_axes(batch_axis, args)
    arrays = [np.asarray(a) for a in args]
    batch = {arrays[k].shape[ax] for k, ax in enumerate(axes) if ax is not None}
    if len(batch) != 1:
        raise ValueError(f"batched arguments have different batch sizes {sorted(batch)}")
    (B,) = batch
    per_shapes = [a.shape[:ax] + a.shape[ax + 1:] if ax is not None else a.shape for a, ax in zip(arrays, axes)]
    key = (function_key(fn), tuple(per_shapes), tuple(axes), B, tuple(a.dtype.name for a in arrays),
           resolve_backend(backend))
    return key, arrays, axes, per_shapes, B


def export_dlfeval(path, fn, *args, batch_axis=-1, backend="numba", dtype=None):
    """Write what ``dlfeval(fn, *args, batch_axis=...)`` computes as a standalone
    module at ``path`` (NumPy, and Numba for the Numba backends; no symjac):
    its ``evaluate(*args)`` takes new arguments of the same shapes and returns
    what dlfeval returns (batch sums included, namedtuples as tuples).
    ``dtype``: the arguments' (float32 if all are, else float64) by default.

    >>> import numpy as np, symjac, tempfile, os, importlib.util
    >>> def loss(X, w):
    ...     L = np.mean((w @ X) ** 2) + 0.5 * np.sum(w ** 2)
    ...     return L, symjac.dlgradient(L, w)
    >>> X, w = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([1.0, 1.0])
    >>> path = symjac.export_dlfeval(os.path.join(tempfile.mkdtemp(), "loss_grad.py"), loss, X, w,
    ...                              batch_axis=(-1, None), backend="numpy")
    >>> spec = importlib.util.spec_from_file_location("loss_grad", path)
    >>> mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    >>> mod.evaluate(X, w)
    (array(6.), array([8., 4.]))
    """
    from symjac.export import export_kernel, plain_tree

    arg_trees = None
    if any(isinstance(a, (tuple, list, dict)) for a in args):  # argument trees: the module takes them too
        arg_trees = [(flatten_tree(a)[1], len(flatten_tree(a)[0])) for a in args]
        args, fn, batch_axis = _flat_call(fn, args, batch_axis)
    key, arrays, axes, per_shapes, B = _dlfeval_key(fn, args, batch_axis, backend)
    entry = _cached(key)
    if entry is None:
        with first_call(getattr(fn, "__name__", "fn")):
            entry = _dlfeval_cold(fn, key, per_shapes, axes, B, backend)
    kernel, plan, treedef = entry
    if dtype is None:
        dtype = "float32" if all(a.dtype == np.float32 for a in arrays) else "float64"
    return export_kernel(kernel, path, backend=backend if backend != "auto" else kernel.backend, dtype=dtype,
                         title=f"dlfeval of {getattr(fn, '__qualname__', 'fn')}", in_axes=axes,
                         dlfeval=(plan, plain_tree(treedef), axes, B), arg_trees=arg_trees)


def _dlfeval_cold(fn, key, per_shapes, axes, B, backend):
    """The traced entry of a dlfeval call, made once (cached)."""
    with BUILDING:  # first calls from several threads: one traces, the others wait
        entry = _cached(key)
        if entry is None:
            with stage("trace, differentiate, lower"):
                entry = _trace_dlfeval(fn, per_shapes, axes, B, backend)
            with _CACHE_LOCK:
                _CACHE[_frozen(key)] = entry  # its arrays copied: a later change in place is a new key
                if len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
    return entry


def _dlfeval_run(entry, arrays, axes, B):
    kernel, plan, treedef = entry
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    # the last kernel argument is 1 / (batch size): means over the batch read it at run time
    arrays = arrays + [np.asarray(1.0 / B if B else np.inf, dtype=dtype)]
    axes = list(axes) + [None]
    results = kernel(*arrays) if kernel.graph.outputs else ()
    values = {}
    for k, leaf in enumerate(kernel.graph.inputs):
        if axes[k] is None:
            for node, v in zip(leaf.ravel(), np.asarray(arrays[k], dtype=float).ravel()):
                values[node.id] = v
    outs = []
    for kind, index, bpos, shared in plan:
        if kind == "batched":
            outs.append(np.moveaxis(results[index], 0, bpos))
            continue
        value = np.zeros(shared.shape if shared is not None else results[index].shape, dtype=dtype)
        if index is not None:
            value = value + results[index]
        if shared is not None:
            evaluated = evaluate_nodes(list(shared.ravel()), values)
            value = value + np.array(evaluated, dtype=dtype).reshape(shared.shape)
        outs.append(np.asarray(value, dtype=dtype))
    return _rebuild(treedef, outs)


def function_key(fn, depth=0, memo=None):
    """What identifies ``fn``'s trace: its code, and the values it reads from
    outside (its closure cells, the module globals its code names, defaults,
    a bound instance), so that a function re-created on each call (a lambda in
    a training loop) with the same code and equal captured values finds its
    trace, and one whose captured values changed is traced again (dlfeval
    evaluates ``fn`` anew on every call, as MATLAB's does: the cache must
    never show).  Arrays count by dtype, shape and bytes, numbers and strings
    by value, lists, tuples, dicts and sets by their contents, a plain
    object by its attributes, functions by their own key; modules, classes
    and other objects by identity (the key holds them, so an id is never
    reused).  Each function is keyed once per call (``memo``: id -> key; a
    function met again inside its own key, recursion, counts by identity
    there), so helpers that call each other cost their number, not their
    paths."""
    memo = {} if memo is None else memo
    if isinstance(fn, types.MethodType):
        return ("method", function_key(fn.__func__, depth + 1, memo), _value_key(fn.__self__, depth + 1, memo))
    code = getattr(fn, "__code__", None)
    if code is None or depth > _KEY_DEPTH:
        return ("object", _Same(fn))
    known = memo.get(id(fn))
    if known is not None:
        return known
    memo[id(fn)] = ("function", _Same(fn))  # while its key is being made (fn held by the memo's caller)
    cells = []
    for cell in fn.__closure__ or ():
        try:
            cells.append(_value_key(cell.cell_contents, depth + 1, memo))
        except ValueError:  # a cell not yet filled
            cells.append(("empty",))
    scope = fn.__globals__
    names = tuple((name, _value_key(scope[name], depth + 1, memo)) for name in _global_names(code)
                  if name in scope)
    key = memo[id(fn)] = ("function", code, tuple(cells), names, _value_key(fn.__defaults__, depth + 1, memo),
                          _value_key(fn.__kwdefaults__, depth + 1, memo))
    return key


_KEY_DEPTH = 6  # nesting followed by `function_key`; deeper values count by identity


def _global_names(code):
    """The names ``code`` and the code nested in it (comprehensions, lambdas) may
    read as globals (attribute names included: the caller keeps those that are
    globals)."""
    names, stack = set(), [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return sorted(names)


def _value_key(v, depth, memo):
    if isinstance(v, float):  # by its bits: 0.0 and -0.0 differ (1 / c is inf or -inf)
        return (float, v.hex())
    if v is None or isinstance(v, (bool, int, complex, str, bytes)):
        return (type(v), v)
    if isinstance(v, np.ndarray) and v.dtype.kind in "biufc":
        return _ArrayKey(v)
    if isinstance(v, np.generic):
        return ("scalar", v.dtype.str, v.tobytes())
    if isinstance(v, (types.FunctionType, types.MethodType)):
        return function_key(v, depth + 1, memo)
    if depth > _KEY_DEPTH or isinstance(v, (types.ModuleType, type)):
        return ("object", _Same(v))
    attrs = getattr(v, "__dict__", None)
    attrs = _value_key(attrs, depth + 1, memo) if type(attrs) is dict else None  # a Python object's attributes
    # a container by its items (and its type); an instance of a subclass, or any other object, also by
    # identity: it may hold state beside its items and attributes (functools.partial's arguments)
    who = _Same(type(v)) if type(v) in (tuple, list, dict, set, frozenset) else _Same(v)
    if isinstance(v, (tuple, list)):
        return ("items", who, attrs) + tuple(_value_key(e, depth + 1, memo) for e in v)
    if isinstance(v, dict):
        return ("dict", who, attrs) + tuple((_value_key(k, depth + 1, memo), _value_key(e, depth + 1, memo))
                                            for k, e in v.items())
    if isinstance(v, (set, frozenset)):
        return ("set", who, attrs, frozenset(_value_key(e, depth + 1, memo) for e in v))
    return ("object", who, attrs)


class _ArrayKey:
    """An array in a cache key: equal to one of the same dtype, shape and bits.

    A lookup key holds the caller's array as it is; a stored key (`_frozen`)
    a copy of it, or, above `COPY_BYTES`, the blake2b digest of its bytes (a
    cache of 64 entries must not hold 64 copies of a large captured
    dataset).  Copies compare in 0.23 ms for 8 MB where the digest takes
    8.5 ms, so an array changed in place no longer matches its old key
    either way, and a small one costs little per call."""

    __slots__ = ("a", "dtype", "shape", "digest")

    def __init__(self, a, dtype=None, shape=None, digest=None):
        self.a = a  # None in a stored key that keeps only the digest
        self.dtype = a.dtype.str if a is not None else dtype
        self.shape = a.shape if a is not None else shape
        self.digest = digest

    def __hash__(self):
        return hash((self.dtype, self.shape))

    def __eq__(self, other):
        if not isinstance(other, _ArrayKey) or self.dtype != other.dtype or self.shape != other.shape:
            return False
        a, b = self.a, other.a
        if a is None or b is None:
            return self._digest() == other._digest()
        return a is b or np.array_equal(_bits(a), _bits(b))

    def _digest(self):
        if self.digest is None:
            self.digest = hashlib.blake2b(np.ascontiguousarray(self.a).tobytes(), digest_size=16).digest()
        return self.digest

    def frozen(self):
        if self.a is None or self.a.nbytes > COPY_BYTES:
            return _ArrayKey(None, self.dtype, self.shape, self._digest())
        return _ArrayKey(np.array(self.a, copy=True))


COPY_BYTES = 1 << 22  # a captured array up to 4 MB is kept in the cache key as a copy, a larger one as a digest


def _bits(a):
    raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return raw.view(np.uint64) if raw.size % 8 == 0 else raw


def _frozen(key):
    """``key`` as the cache stores it (arrays copied or digested)."""
    if isinstance(key, _ArrayKey):
        return key.frozen()
    if type(key) is tuple:
        return tuple(_frozen(k) for k in key)
    if type(key) is frozenset:
        return frozenset(_frozen(k) for k in key)
    return key


class _Same:
    """An object in a cache key by identity (lists and dicts are unhashable; the
    reference keeps the object alive, so its id is never reused meanwhile)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj


def _flatten(result):
    """Leaves of a tree of tuples, lists and dicts (MATLAB's multiple outputs,
    nested as the function returned them) and its structure for `_rebuild`."""
    leaves = []

    def walk(r):
        if isinstance(r, (tuple, list)):
            return type(r), [walk(e) for e in r]
        if isinstance(r, dict):
            return (dict, tuple(r)), [walk(e) for e in r.values()]
        leaves.append(r)
        return None

    return leaves, walk(result)


def _rebuild(treedef, leaves):
    it = iter(leaves)

    def build(d):
        if d is None:
            return next(it)
        kind, parts = d
        items = [build(e) for e in parts]
        if isinstance(kind, tuple):  # (dict, keys)
            return dict(zip(kind[1], items))
        return kind(*items) if hasattr(kind, "_fields") else kind(items)  # a namedtuple takes fields

    return build(treedef)


def _trace_dlfeval(fn, per_shapes, axes, B, backend):
    """Kernel, output plan and output structure of ``fn``: each output is
    batched (a kernel output), a batch sum (a reduced kernel output plus a
    once-only offset) or shared."""
    with BUILDING:
        inputs = make_inputs([tuple(s) for s in per_shapes] + [()])  # the last: 1 / (batch size)

        def run(*traced):
            with inverse_batch(inputs[-1][()]):
                return fn(*[BatchedArray(t, ax, B) for t, ax in zip(traced, axes)])

        result = call_traced(run, inputs)
        items, treedef = _flatten(result)
        plan, kernel_outs, reduced = [], [], []
        for r in items:
            if isinstance(r, BatchedArray) and r.bpos is not None:
                plan.append(("batched", len(kernel_outs), r.bpos, None))
                kernel_outs.append(_nodes(r.per))
            elif isinstance(r, Reduced):
                reduced.append(len(kernel_outs))
                plan.append(("reduced", len(kernel_outs), None, r.offset))
                kernel_outs.append(Whole(r.whole) if r.is_whole() else r.terms)
            elif isinstance(r, BatchedArray):
                plan.append(("shared", None, None, r.nodes))
            else:
                plan.append(("shared", None, None, _nodes(r)))
        graph = Graph(inputs, kernel_outs, treedef=tuple("*" for _ in kernel_outs))
        kernel = Kernel(fn, in_axes=tuple(axes) + (None,), backend=backend, name=getattr(fn, "__name__", "fn"))
        kernel.adopt(graph, list(axes) + [None], reduced)
    return kernel, plan, treedef
