"""The public transforms: `jacobian`, `gradient`, `hessian`, `divergence`,
`laplacian` and `compile`.

A transform is built from two parts: a *traced* function (per-sample, on
traced arrays, returning traced values) and a kernel cache keyed by
per-sample shapes.  Called on traced arguments, a transform returns traced
values, so transforms compose (``jacobian(jacobian(f))`` is a Hessian and a
model can return its value and its Jacobian together); called on arrays, it
runs the compiled kernel.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from symjac.ad import jacobian_nodes, laplacian_nodes
from symjac.ad.blocks import block_jacobian, supported as block_rules_cover
from symjac.ad.compressed import compressed_jacobian, is_array_program
from symjac.frontend.policy import MIN_ARRAY, policy
from symjac.frontend.graph import Whole, outputs_of, roots_of, unflatten
from symjac.frontend.trace import call_traced, make_inputs, not_own, own_arguments
from symjac.frontend.traced import TracedArray, as_nodes, from_tensor, is_traced, scalar_array
from symjac.ir import BUILDING, ZERO, broadcast_scalar, constant_value, make, rebuild, substitute
from symjac.ops import array as aops
from symjac.kernel import Kernel, check_arguments, refuse_container, resolve_backend
from symjac.progress import first_call
from symjac.sparse import SparseJacobian

__all__ = ["jacobian", "gradient", "hessian", "divergence", "laplacian", "compile", "traced_jacobian"]


def _normalize_argnums(argnums):
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        return (int(argnums),), False
    if isinstance(argnums, (tuple, list)) and argnums and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in argnums):
        if len(set(argnums)) != len(argnums):
            raise ValueError(f"argnums has repeated entries: {tuple(argnums)}")
        return tuple(int(a) for a in argnums), True
    raise TypeError(f"argnums must be an int or a non-empty tuple of ints, got {argnums!r}")


def _check_argnums(argnums, nargs):
    for a in argnums:
        if not -nargs <= a < nargs:
            raise ValueError(f"argnums entry {a} is out of range for a function called with {nargs} "
                             "positional argument(s)")
    nums = tuple(a % nargs for a in argnums)
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums {tuple(argnums)} name the same argument twice")
    return nums


class _Variables:
    """``f`` called with fresh leaves standing for the arguments at ``nums``.

    Fresh leaves every time: the values passed in may also reach ``f``
    another way (a closure over the same traced value, the same value passed
    as another argument), and differentiating with respect to them in place
    would add those paths (perturbation confusion).  `substitute` puts the
    real values into any derivative built from the leaves.
    """

    def __init__(self, f, args, nums):
        arrays = [as_nodes(a) for a in args]
        own = own_arguments()
        if len(own) == len(args) and all(a is b for a, b in zip(own, args)):
            # the trace's own fresh leaves, straight from the trace: nothing else reaches them
            self.arrays, self.back = arrays, {}
            self.outs, self.treedef = outputs_of(call_traced(f, self.arrays), whole=True)
            self.flat_in = [n for i in nums for n in self.arrays[i].ravel()]
            return
        fresh = make_inputs([arrays[i].shape for i in nums])
        self.arrays = list(arrays)
        for i, leaf in zip(nums, fresh):
            self.arrays[i] = leaf
        self.back = {l.id: n for i, leaf in zip(nums, fresh)
                     for l, n in zip(leaf.ravel(), np.broadcast_to(arrays[i], leaf.shape).ravel())}
        self.outs, self.treedef = outputs_of(call_traced(f, self.arrays), whole=True)
        self.flat_in = [n for i in nums for n in self.arrays[i].ravel()]

    def substitute(self, nodes):
        """``nodes`` (an object array) with the stand-in leaves replaced."""
        if not self.back or not nodes.size:
            return nodes
        new = substitute(list(nodes.ravel()), self.back, rebuild)
        return np.array(new, dtype=object).reshape(nodes.shape)


def traced_jacobian(f, argnums, multi, mode):
    """The per-sample Jacobian of ``f`` as a function of traced arrays."""

    def jac(*args):
        nums = _check_argnums(argnums, len(args))
        v = _Variables(f, args, nums)
        walk = _array_level(v) if mode != "rev" else None
        if walk is not None:
            return _array_jacobian(v, nums, multi, walk)
        flat_out = [n for o in v.outs for n in o.ravel()]
        J = v.substitute(jacobian_nodes(flat_out, v.flat_in, mode))
        blocks, r = [], 0
        for o in v.outs:
            row, c = [], 0
            for i in nums:
                size = v.arrays[i].size
                block = J[r: r + o.size, c: c + size].reshape(o.shape + v.arrays[i].shape)
                row.append(TracedArray(block))
                c += size
            blocks.append(tuple(row) if multi else row[0])
            r += o.size
        return unflatten(v.treedef, blocks)

    return jac


def _array_level(v):
    """The program's walk when its Jacobian is taken at the array level
    (compressed forward mode): it works on tensors and has more outputs than
    a reverse sweep per output would be worth; else None."""
    if sum(o.size for o in v.outs) <= ARRAY_REVERSE_MAX:
        return None
    # a program whose tensors are all small (a few contractions in scalar code) keeps the scalar sweeps
    min_size = policy()["min_array"] or MIN_ARRAY
    return is_array_program([n for o in v.outs for n in roots_of(o)], v.flat_in, min_size)


ARRAY_REVERSE_MAX = 8  # outputs up to this many entries: one reverse sweep per entry (a gradient is one)


def _array_jacobian(v, nums, multi, walk):
    """The Jacobian blocks of an array program, each one tensor (the structural
    nonzeros placed into zeros), from compressed forward mode."""
    outs = [o.node if isinstance(o, Whole) else list(o.ravel()) for o in v.outs]
    if block_rules_cover(walk[0], walk[1]):
        per_output = block_jacobian(outs, v.flat_in, walk)
    else:  # an op without an entry-by-entry local Jacobian (conv2d): compressed forward mode
        per_output, _ = compressed_jacobian(outs, v.flat_in, walk)
    blocks = []
    for o, jo in zip(v.outs, per_output):
        row, c = [], 0
        for i in nums:
            in_shape = v.arrays[i].shape
            size = v.arrays[i].size
            sel = np.nonzero((jo.cols >= c) & (jo.cols < c + size))[0]
            shape = o.shape + in_shape
            if not sel.size:
                node = broadcast_scalar(ZERO, shape) if shape else ZERO
            else:
                values = aops.take(jo.values, sel)
                node = aops.place(values, jo.rows[sel] * size + (jo.cols[sel] - c), shape)
            node = substitute([node], v.back, rebuild)[0] if v.back else node
            row.append(from_tensor(node) if shape else TracedArray(scalar_array(node)))
            c += size
        blocks.append(tuple(row) if multi else row[0])
    return unflatten(v.treedef, blocks)


def traced_divergence(f, argnum, mode):
    """Per-sample divergence: sum_i d f_i / d x_i, only the diagonal built into the kernel."""

    def div(*args):
        (num,) = _check_argnums((argnum,), len(args))
        v = _Variables(f, args, (num,))
        if v.treedef != "*" or v.outs[0].shape != v.arrays[num].shape:
            got = "a tuple" if v.treedef != "*" else f"shape {v.outs[0].shape}"
            raise ValueError(f"divergence needs f to return one array shaped like argument {num} "
                             f"{v.arrays[num].shape}, got {got}")
        J = jacobian_nodes(list(v.outs[0].ravel()), v.flat_in, mode)
        total = ZERO
        for i in range(J.shape[0]):
            total = make("add", total, J[i, i])
        return TracedArray(v.substitute(scalar_array(total)))

    return div


def traced_laplacian(f, argnum):
    """Per-sample Laplacian of each component of f, by the forward Laplacian."""

    def lap(*args):
        (num,) = _check_argnums((argnum,), len(args))
        v = _Variables(f, args, (num,))
        blocks = []
        for o in v.outs:
            L, _ = laplacian_nodes(list(o.ravel()), v.flat_in)
            arr = np.empty(o.shape, dtype=object)
            arr.reshape(-1)[:] = L if arr.size else []
            blocks.append(TracedArray(v.substitute(arr)))
        return unflatten(v.treedef, blocks)

    return lap


class Transformed:
    """A transformed per-sample function: traced on traced input, compiled on arrays.

    One `Kernel` per (per-sample shapes, shared arguments), made on the first
    call that needs it; first calls from several threads are safe (one
    traces, the others wait).
    """

    def __init__(self, traced, *, in_axes, backend, name, doc=None):
        self._traced = traced
        self.in_axes = in_axes
        self.backend = resolve_backend(backend)
        self.name = name
        self._kernels = {}
        if doc:
            self.__doc__ = doc

    def kernel_for(self, *args):
        """The `Kernel` that a call with these arguments uses (traced on demand)."""
        return self._kernel_for(check_arguments(self._traced, args, self.in_axes))

    @staticmethod
    def _key(checked):
        arrays, axes = checked[0], checked[1]
        shapes = tuple(a.shape[1:] if ax is not None else a.shape for a, ax in zip(arrays, axes))
        return shapes, (shapes, tuple(ax is None for ax in axes))

    def _ready(self, checked):
        """The kernel for these arguments if it exists (the fast path of a call)."""
        return self._kernels.get(self._key(checked)[1])

    def _kernel_for(self, checked):
        axes = checked[1]
        shapes, key = self._key(checked)
        k = self._kernels.get(key)
        if k is None:
            with BUILDING:  # one thread traces, the others wait (the one lock around traces)
                k = self._kernels.get(key)
                if k is None:
                    k = self._kernels[key] = self._specialize(shapes, axes, checked)
        return k

    def _specialize(self, shapes, axes, checked):
        k = Kernel(self._traced, in_axes=self.in_axes, backend=self.backend, name=self.name)
        return k.specialize(shapes, axes, checked)

    def __call__(self, *args, out=None, start=0, stop=None):
        if any(is_traced(a) for a in args):
            with not_own():  # a model's own call: its arguments may reach f another way too
                return self._traced(*_traced_args(args))
        checked = check_arguments(self._traced, args, self.in_axes)
        k = self._ready(checked)
        if k is not None:
            return k.run(checked, out=out, start=start, stop=stop)
        with first_call(self.name):  # a long first call reports its stages
            return self._kernel_for(checked).run(checked, out=out, start=start, stop=stop)

    def export(self, path, *args, backend=None, dtype=None):
        """Write the kernel for ``args`` (example arguments; none if this transform
        has compiled one shape only) as a standalone module at ``path``: see
        `symjac.Kernel.export`.  ``dtype``: the arguments' by default.

        >>> import numpy as np, symjac, tempfile, os, importlib.util
        >>> J = symjac.jacobian(lambda x, p: np.sin(x) * p, in_axes=(0, None), backend="numpy")
        >>> path = J.export(os.path.join(tempfile.mkdtemp(), "jac.py"), np.ones((3, 2)), np.array([2.0, 3.0]))
        >>> spec = importlib.util.spec_from_file_location("jac", path)
        >>> mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        >>> mod.evaluate(np.zeros((1, 2)), np.array([2.0, 3.0]))
        array([[[2., 0.],
                [0., 3.]]])
        """
        from symjac.export import export_kernel

        k, dtype = self._for_export(args, dtype)
        return export_kernel(k, path, backend=backend, dtype=dtype, title=self.name, **self._export_extra(k))

    def _for_export(self, args, dtype):
        if args:
            checked = check_arguments(self._traced, args, self.in_axes)
            return self._kernel_for(checked), dtype or checked[3].name
        if len(self._kernels) != 1:
            raise ValueError(f"export: this transform has compiled {len(self._kernels)} shapes; pass example "
                             "arguments (export(path, *args)) to say which kernel to write")
        return next(iter(self._kernels.values())), dtype or "float64"

    def _export_extra(self, k):
        return {}

    def __repr__(self):
        return f"<symjac transform {self.name!r}, {len(self._kernels)} compiled shape(s)>"


def _traced_args(args):
    """Arguments of a transform called inside a trace, as traced arrays."""
    for i, a in enumerate(args):
        refuse_container(a, f"argument {i}")
    return [a if isinstance(a, TracedArray) else TracedArray(as_nodes(a)) for a in args]


class SparseTransformed(Transformed):
    """`jacobian(..., sparse=True)`: the kernel writes structural nonzeros only.

    The zero pattern is read off the traced Jacobian while the kernel for a
    shape is traced and is kept on that kernel (``kernel.sparsity``): a call
    with other shapes, from any thread, has its own kernel and pattern.
    """

    def __init__(self, dense_traced, argnums, **kw):
        self._dense = dense_traced
        self._argnums = argnums

        def sparse_traced(*args):
            return self._sparse_values(args)[0]

        sparse_traced.__wrapped__ = dense_traced  # argument names for error messages
        super().__init__(sparse_traced, **kw)

    def _sparse_values(self, args):
        """(values, (patterns, treedef)): the Jacobian's structural nonzeros and where they sit."""
        nums = _check_argnums(self._argnums, len(args))
        leaves, treedef = outputs_of(self._dense(*args), whole=True)
        values, patterns = [], []
        for j, J in enumerate(leaves):  # one block per (output, argnum), argnums varying fastest
            arg = args[nums[j % len(nums)]]
            nout_dims = J.ndim - len(arg.shape if isinstance(arg, TracedArray) else np.shape(arg))
            out_shape, in_shape = J.shape[:nout_dims], J.shape[nout_dims:]
            placed = _placed(J)
            if placed is not None:  # an array-level Jacobian: its nonzeros and where they sit, already
                values_node, flat_pos = placed
                n_in = math.prod(in_shape)
                values.append(from_tensor(values_node))
                patterns.append((flat_pos // n_in, flat_pos % n_in, out_shape, in_shape))
                continue
            flat = J.reshape(math.prod(out_shape), math.prod(in_shape))
            rows, cols = np.nonzero(np.vectorize(lambda n: n is not ZERO, otypes=[bool])(flat)
                                    if flat.size else np.zeros(flat.shape, bool))
            values.append(TracedArray(flat[rows, cols]))
            patterns.append((rows.astype(np.int64), cols.astype(np.int64), out_shape, in_shape))
        return unflatten(treedef, values), (patterns, treedef)

    def _specialize(self, shapes, axes, checked):
        found = []  # this specialization's own pattern: nothing shared with other shapes or threads

        def traced(*args):
            values, sparsity = self._sparse_values(args)
            found.append(sparsity)
            return values

        traced.__wrapped__ = self._traced  # argument names and the transform's name for error notes

        k = Kernel(traced, in_axes=self.in_axes, backend=self.backend, name=self.name)
        k.specialize(shapes, axes, checked)
        k.sparsity = found[-1]
        return k

    def __call__(self, *args, out=None, start=0, stop=None):
        if any(is_traced(a) for a in args):
            raise TypeError("a sparse Jacobian cannot be used inside a traced function; use sparse=False")
        checked = check_arguments(self._traced, args, self.in_axes)
        k = self._ready(checked)
        if k is not None:
            values = k.run(checked, out=out, start=start, stop=stop)
        else:
            with first_call(self.name):  # a long first call reports its stages
                k = self._kernel_for(checked)
                values = k.run(checked, out=out, start=start, stop=stop)
        patterns, treedef = k.sparsity
        leaves, _ = _flatten_values(values)
        return unflatten(treedef, [SparseJacobian(v, *p) for v, p in zip(leaves, patterns)])

    def _export_extra(self, k):
        patterns, treedef = k.sparsity
        if len(patterns) != 1:
            raise ValueError(f"export: this sparse Jacobian has {len(patterns)} blocks (several outputs or "
                             "argnums); export one block at a time (one output, one argnum)")
        return {"sparsity": patterns[0]}


def _placed(J):
    """(values node, sorted flat positions) when ``J`` is a 1-D tensor placed
    into zeros at distinct constant positions (an array-level Jacobian)."""
    node = J.node if isinstance(J, Whole) else None
    if node is None or node.op not in ("scatter", "embed") or len(node.args[0].shape) != 1 or \
            (node.op == "scatter" and len(node.args) != 2):
        return None
    if node.op == "scatter":
        pos = np.asarray(constant_value(node.args[1])).reshape(-1)
    else:
        _, offset, strides = node.attr
        pos = offset + strides[0] * np.arange(node.args[0].shape[0], dtype=np.int64)
    if pos.size > 1 and not np.all(np.diff(pos) > 0):
        return None
    return node.args[0], pos.astype(np.int64)


def _flatten_values(values):
    leaves = []

    def flat(v):
        if isinstance(v, tuple):
            return tuple(flat(e) for e in v)
        leaves.append(v)
        return "*"

    return leaves, flat(values)


def jacobian(f, argnums=0, *, in_axes=0, mode="auto", backend="auto", sparse=False):
    """Batched Jacobian of the per-sample function ``f``.

    Returns a callable.  Called on arrays whose batched arguments carry the
    batch axis given by ``in_axes`` (``None`` for arguments shared by every
    sample), it returns the Jacobian of shape ``(B, *out_shape, *in_shape)``,
    a tuple for several ``argnums``, nested in a tuple when ``f`` returns a
    tuple.  Called on traced arguments (inside another traced function) it
    returns traced values, so ``jacobian(jacobian(f))`` is a Hessian.
    ``mode`` is ``"auto"`` (cheaper of forward and reverse by counted
    derivative terms), ``"fwd"`` or ``"rev"``.  With ``sparse=True`` the kernel
    writes only the structural nonzeros and the result is a `SparseJacobian`.
    A model on whole arrays (see `tensor_policy`) gets its Jacobian at the
    array level (sparse forward mode on blocks of rows, columns and values;
    the kernel's size does not grow with the arrays), unless its output has
    at most 8 entries (one reverse sweep per entry).  ``backend``: ``"auto"``,
    ``"numba"``, ``"numba-parallel"``, ``"numpy"`` or ``"cuda"`` (an NVIDIA GPU;
    GPU arrays in give GPU arrays out: the README's GPU section).

    >>> import numpy as np, symjac
    >>> J = symjac.jacobian(lambda x: np.array([x[0] * x[1], np.sin(x[1])]), backend="numpy")
    >>> J(np.array([[2.0, 0.0]])).tolist()
    [[[0.0, 2.0], [0.0, 1.0]]]
    """
    if not callable(f):
        raise TypeError(f"jacobian: f must be callable, got {type(f).__name__}")
    if mode not in ("auto", "fwd", "rev"):
        raise ValueError(f"mode must be 'auto', 'fwd' or 'rev', got {mode!r}")
    nums, multi = _normalize_argnums(argnums)
    traced = traced_jacobian(f, nums, multi, mode)
    name = f"jacobian_{getattr(f, '__name__', 'f')}"
    functools.update_wrapper(traced, f, assigned=("__doc__",), updated=())
    traced.__name__ = traced.__qualname__ = name
    if sparse:
        return SparseTransformed(traced, nums, in_axes=in_axes, backend=backend, name=name)
    return Transformed(traced, in_axes=in_axes, backend=backend, name=name)


def _transform(traced, f, kind, in_axes, backend):
    name = f"{kind}_{getattr(f, '__name__', 'f')}"
    traced.__name__ = name
    traced.__wrapped__ = f  # argument names for error messages
    return Transformed(traced, in_axes=in_axes, backend=backend, name=name)


def _check_callable(f, what):
    if not callable(f):
        raise TypeError(f"{what}: f must be callable, got {type(f).__name__}")


def _single_argnum(argnums, what):
    if isinstance(argnums, (int, np.integer)) and not isinstance(argnums, bool):
        return int(argnums)
    raise TypeError(f"{what} takes one argnum (an int), got {argnums!r}")


def gradient(f, argnums=0, *, in_axes=0, backend="auto"):
    """Batched gradient of a per-sample scalar function ``f``.

    Same conventions as `jacobian` (``argnums``, ``in_axes``, composition);
    ``f`` must return a scalar per sample, and the gradient has the shape of
    the argument, ``(B, *in_shape)`` (a tuple for several ``argnums``).

    >>> import numpy as np, symjac
    >>> g = symjac.gradient(lambda x: np.sum(x ** 2) * x[0], backend="numpy")
    >>> g(np.array([[1.0, 2.0]]))
    array([[7., 4.]])
    """
    _check_callable(f, "gradient")

    def scalar_f(*args):
        result = f(*args)
        shape = np.shape(as_nodes(result)) if not isinstance(result, tuple) else "a tuple"
        if shape != ():
            raise ValueError(f"gradient needs f to return a scalar per sample, got {shape}; "
                             "use symjac.jacobian for array outputs")
        return result

    nums, multi = _normalize_argnums(argnums)
    return _transform(traced_jacobian(scalar_f, nums, multi, "auto"), f, "gradient", in_axes, backend)


def hessian(f, argnums=0, *, in_axes=0, backend="auto"):
    """Batched Hessian: ``jacobian(jacobian(f, argnums), argnums)``.

    Shape ``(B, *out_shape, *in_shape, *in_shape)``; nested tuples for several
    ``argnums``, as in JAX.

    >>> import numpy as np, symjac
    >>> symjac.hessian(lambda x: x[0] ** 2 * x[1], backend="numpy")(np.array([[1.0, 3.0]]))
    array([[[6., 2.],
            [2., 0.]]])
    """
    _check_callable(f, "hessian")
    nums, multi = _normalize_argnums(argnums)
    inner = traced_jacobian(f, nums, multi, "auto")
    return _transform(traced_jacobian(inner, nums, multi, "auto"), f, "hessian", in_axes, backend)


def divergence(f, argnums=0, *, in_axes=0, mode="auto", backend="auto"):
    """Batched divergence ``sum_i d f_i / d x_i`` of ``f`` whose output is shaped
    like its argument; shape ``(B,)``.  Only the diagonal of the Jacobian
    reaches the kernel.

    >>> import numpy as np, symjac
    >>> symjac.divergence(lambda x: x * x[::-1], backend="numpy")(np.array([[1.0, 2.0]]))
    array([3.])
    """
    _check_callable(f, "divergence")
    num = _single_argnum(argnums, "divergence")
    return _transform(traced_divergence(f, num, mode), f, "divergence", in_axes, backend)


def laplacian(f, argnums=0, *, in_axes=0, backend="auto"):
    """Batched Laplacian of every output component of ``f`` with respect to
    argument ``argnums``: the sum of the second derivatives over all of its
    elements, by a forward-Laplacian sweep (no Hessian is built).  Shape
    ``(B, *out_shape)``.

    >>> import numpy as np, symjac
    >>> symjac.laplacian(lambda x: np.sum(x ** 3), backend="numpy")(np.array([[1.0, 2.0]]))
    array([18.])
    """
    _check_callable(f, "laplacian")
    num = _single_argnum(argnums, "laplacian")
    return _transform(traced_laplacian(f, num), f, "laplacian", in_axes, backend)


def compile(f, *, in_axes=0, backend="auto"):
    """Compile the per-sample function ``f`` into a batch `Kernel`.

    Derivatives inside ``f`` (``symjac.jacobian`` called on traced arguments)
    are fused into the same kernel.

    >>> import numpy as np, symjac
    >>> def f(x):
    ...     return x ** 2, symjac.jacobian(lambda y: y ** 2)(x)
    >>> k = symjac.compile(f, backend="numpy")
    >>> value, jac = k(np.array([[3.0]]))
    >>> value.tolist(), jac.tolist()
    ([[9.0]], [[[6.0]]])
    """
    return Kernel(f, in_axes=in_axes, backend=backend, name=getattr(f, "__name__", "kernel"))

