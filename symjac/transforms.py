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

from symjac.ad import jacobian_nodes, jvp_nodes, laplacian_nodes, vjp_nodes
from symjac.ad.blocks import block_jacobian, supported as block_rules_cover
from symjac.ad.compressed import compressed_jacobian, is_array_program
from symjac.frontend.policy import MIN_ARRAY, policy
from symjac.frontend.graph import Whole, flatten_like, flatten_tree, map_tree, outputs_of, roots_of, unflatten
from symjac.frontend.trace import call_traced, make_inputs, not_own, own_arguments
from symjac.frontend.traced import TracedArray, as_nodes, from_tensor, is_traced, scalar_array
from symjac.ir import BUILDING, ZERO, broadcast_scalar, make, rebuild, substitute
from symjac.ops import array as aops
from symjac.kernel import (Kernel, OneSample, _signature, _static_key as static_key, batches_nothing, check_arguments,
                           flatten_args, rebuild_trees, resolve_backend, static_variant as _static_variant, tree_call)
from symjac.progress import first_call
from symjac.sparse import SparseJacobian

__all__ = ["jacobian", "gradient", "hessian", "divergence", "laplacian", "compile", "traced_jacobian", "jvp", "vjp",
           "hvp", "value_and_gradient", "sparsity"]


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
        if any(isinstance(a, (tuple, list, dict)) for a in args):  # argument trees: one variable per leaf
            leaves, defs = flatten_args(args)
            starts = np.cumsum([0] + [n for _, n in defs])
            self.groups = [(d, list(range(starts[k], starts[k + 1]))) for k, (d, _) in enumerate(defs)]
            user_f = f

            def f(*flat):
                return user_f(*rebuild_trees(defs, flat))

            args = leaves
            self.leaf_nums = [j for i in nums for j in self.groups[i][1]]
        else:
            self.groups = [("*", [i]) for i in range(len(args))]
            self.leaf_nums = list(nums)
        nums = self.leaf_nums
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

    def regroup(self, nums, per_leaf):
        """Blocks per differentiated leaf (in ``leaf_nums`` order) as blocks per
        argument: a tree argument's blocks rebuilt into its tree."""
        out, it = [], iter(per_leaf)
        for i in nums:
            d, leaves = self.groups[i]
            blocks = [next(it) for _ in leaves]
            out.append(blocks[0] if d == "*" else unflatten(d, blocks))
        return out

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
            for i in v.leaf_nums:
                size = v.arrays[i].size
                block = J[r: r + o.size, c: c + size].reshape(o.shape + v.arrays[i].shape)
                row.append(TracedArray(block))
                c += size
            row = v.regroup(nums, row)
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
        for i in v.leaf_nums:
            in_shape = v.arrays[i].shape
            size = v.arrays[i].size
            sel = np.nonzero((jo.cols >= c) & (jo.cols < c + size))[0]
            shape = o.shape + in_shape
            if not sel.size:
                node = broadcast_scalar(ZERO, shape) if shape else ZERO
            else:
                values = aops.take(jo.values, sel)
                # the values are this block's alone: a scatter's sums go straight into the block
                node = aops.place(values, jo.rows[sel] * size + (jo.cols[sel] - c), shape, own=True)
            node = substitute([node], v.back, rebuild)[0] if v.back else node
            row.append(from_tensor(node) if shape else TracedArray(scalar_array(node)))
            c += size
        row = v.regroup(nums, row)
        blocks.append(tuple(row) if multi else row[0])
    return unflatten(v.treedef, blocks)


def traced_divergence(f, argnum, mode):
    """Per-sample divergence: sum_i d f_i / d x_i, only the diagonal built into the kernel."""

    def div(*args):
        (num,) = _check_argnums((argnum,), len(args))
        v = _Variables(f, args, (num,))
        d, leaves = v.groups[num]  # a tree argument: f returns the same tree (a vector field on it)
        want = [v.arrays[j].shape for j in leaves]
        if v.treedef != d or [o.shape for o in v.outs] != want:
            got = f"shapes {[o.shape for o in v.outs]}" if v.treedef == d else "another structure"
            raise ValueError(f"divergence needs f to return an array (or tree) shaped like argument {num} "
                             f"{want if d != '*' else want[0]}, got {got}")
        J = jacobian_nodes(_flat_nodes(v.outs), v.flat_in, mode)
        total = ZERO
        for i in range(J.shape[0]):
            total = make("add", total, J[i, i])
        return TracedArray(v.substitute(scalar_array(total)))

    return div


def traced_laplacian(f, argnum):
    """Per-sample Laplacian of each component of f, by the forward Laplacian."""

    def lap(*args):
        (num,) = _check_argnums((argnum,), len(args))  # a tree argument: the sum over all its leaves
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
        self._given_axes = in_axes
        self.one_sample = OneSample(self._batched, self._fast_for) if batches_nothing(in_axes) else None
        self.in_axes = 0 if self.one_sample is not None else in_axes  # one sample: a batch of one
        self.backend = resolve_backend(backend)
        self.name = name
        self._kernels = {}
        self._whole = {}  # argument signature -> batched call without the checks (`Kernel.fast_batched`)
        if doc:
            self.__doc__ = doc

    def kernel_for(self, *args):
        """The `Kernel` that a call with these arguments uses (traced on demand)."""
        return self._kernel_for(check_arguments(self._traced, self._as_batch(args), self.in_axes))

    def _as_batch(self, args):
        """One sample's arguments as a batch of one (``in_axes=None``); others as given."""
        return [np.asarray(a)[None] for a in args] if self.one_sample is not None else args

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

    def __call__(self, *args, out=None, start=0, stop=None, **static):
        if static:
            return self.with_static(static)(*args, out=out, start=start, stop=stop)
        one = self.one_sample
        if one is not None and out is None and start == 0 and stop is None:
            call = one.lookup(args)  # only plain ndarrays of a signature seen before: never traced values
            if call is not None:
                return call(args)
        if _has_traced(args):
            with not_own():  # a model's own call: its arguments may reach f another way too
                return self._traced(*_traced_args(args))
        if any(isinstance(a, (tuple, list, dict)) for a in args):
            return tree_call(self, args, lambda flat_fn, axes, defs: Transformed(
                flat_fn, in_axes=axes, backend=self.backend, name=self.name))(out=out, start=start, stop=stop)
        if self.one_sample is not None:
            if (start, stop) != (0, None):
                raise TypeError("start and stop slice a batch; this transform takes one sample (in_axes=None)")
            return self.one_sample(args, out)
        return self._batched(args, out, start, stop)

    _remake = None  # g -> the same transform of g (set by the public constructors)

    def with_static(self, static):
        """This transform of ``f`` with keyword arguments ``static`` bound: static
        values (numbers, strings, arrays by their bytes), each distinct set traced
        and compiled once, as ``jax.jit``'s ``static_argnames``."""
        return _static_variant(self, static)

    def _fast_for(self, arrays):
        checked = check_arguments(self._traced, arrays, 0)
        k = self._ready(checked)
        return None if k is None else self._fast(k, checked)

    def _fast(self, k, checked):
        return k.fast_one_sample(checked)

    def _batched(self, args, out, start=0, stop=None):
        whole = out is None and start == 0 and stop is None and self.one_sample is None
        sig = _signature(args) if whole else None
        if sig is not None:
            call = self._whole.get(sig)
            if call is not None:
                return call(args)
        checked = check_arguments(self._traced, args, self.in_axes)
        k = self._ready(checked)
        if k is not None:
            result = k.run(checked, out=out, start=start, stop=stop)
        else:
            with first_call(self.name):  # a long first call reports its stages
                result = self._kernel_for(checked).run(checked, out=out, start=start, stop=stop)
        if sig is not None and len(self._whole) < 64:
            call = self._fast_whole(self._ready(checked), checked)
            if call is not None:
                self._whole[sig] = call  # the next call of this signature skips the checks
        return result

    def _fast_whole(self, k, checked):
        return None if k is None else k.fast_batched(checked)

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

        with first_call(self.name):  # a long trace reports its stages
            k, dtype = self._for_export(args, dtype)
        return export_kernel(k, path, backend=backend, dtype=dtype, title=self.name,
                             one_sample=self.one_sample is not None, options=f"in_axes={self.in_axes!r}"
                             if self.one_sample is None else "in_axes=None", **self._export_extra(k))

    def _for_export(self, args, dtype):
        if args:
            checked = check_arguments(self._traced, self._as_batch(args), self.in_axes)
            return self._kernel_for(checked), dtype or checked[3].name
        if len(self._kernels) != 1:
            raise ValueError(f"export: this transform has compiled {len(self._kernels)} shapes; pass example "
                             "arguments (export(path, *args)) to say which kernel to write")
        k = next(iter(self._kernels.values()))
        return k, dtype or next(iter(k._compiled), ("float64",))[0]

    def _export_extra(self, k):
        return {}

    def __repr__(self):
        return f"<symjac transform {self.name!r}, {len(self._kernels)} compiled shape(s)>"


def _traced_args(args):
    """Arguments of a transform called inside a trace, as traced arrays (trees kept)."""
    return [map_tree(lambda x: x if isinstance(x, TracedArray) else TracedArray(as_nodes(x)), a) for a in args]


def _has_traced(args):
    return any(is_traced(x) for a in args for x in (flatten_tree(a)[0] if isinstance(a, (tuple, list, dict))
                                                    else (a,)))


def _remakeable(t, f, remake):
    """Let ``t`` take keyword arguments for ``f`` (`Transformed.with_static`)."""
    t._remake, t._remake_f = remake, f
    return t


def _map_leaves(tree, fn):
    return map_tree(fn, tree)


class _ScipyJacobian:
    """One sample's sparse Jacobian as a SciPy CSR or CSC matrix whose index
    arrays are made once and whose ``data`` the kernel refills on each call
    (CSR: the kernel writes it directly; CSC: through a permutation)."""

    def __init__(self, fmt, rows, cols, out_shape, in_shape, dtype):
        self.args = (fmt, rows, cols, out_shape, in_shape, dtype)
        self._make()

    def _make(self):
        import scipy.sparse as sp

        fmt, rows, cols, out_shape, in_shape, dtype = self.args
        m, n = math.prod(out_shape), math.prod(in_shape)
        if fmt == "csr":
            self.perm = None
            indptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
            self.matrix = sp.csr_matrix((np.zeros(len(rows), dtype), cols.astype(np.int64), indptr), shape=(m, n))
        else:
            self.perm = np.lexsort((rows, cols))  # CSR order -> CSC order
            indptr = np.searchsorted(cols[self.perm], np.arange(n + 1)).astype(np.int64)
            self.matrix = sp.csc_matrix((np.zeros(len(rows), dtype), rows[self.perm].astype(np.int64), indptr),
                                        shape=(m, n))
            self.scratch = np.empty((1, len(rows)), dtype)
        self.arrays = (self.matrix.data, self.matrix.indices, self.matrix.indptr)

    def target(self):
        """Where the kernel writes: the matrix's data (CSR), else a scratch row.  A
        matrix the caller restructured (``eliminate_zeros``, ``sort_indices``) is
        replaced by a new one: the kernel's layout is the pattern's."""
        m = self.matrix
        if any(a is not b for a, b in zip((m.data, m.indices, m.indptr), self.arrays)) or \
                m.data.size != len(self.args[1]):
            self._make()
        return self.matrix.data.reshape(1, -1) if self.perm is None else self.scratch

    def settle(self):
        if self.perm is not None:
            np.take(self.scratch[0], self.perm, out=self.matrix.data)

    def fill(self, values):
        values = np.asarray(values).reshape(-1)
        if self.perm is None:
            self.matrix.data[:] = values
        else:
            np.take(values, self.perm, out=self.matrix.data)


class SparseTransformed(Transformed):
    """`jacobian(..., sparse=True)`: the kernel writes structural nonzeros only.

    The zero pattern is read off the traced Jacobian while the kernel for a
    shape is traced and is kept on that kernel (``kernel.sparsity``): a call
    with other shapes, from any thread, has its own kernel and pattern.
    """

    def __init__(self, dense_traced, argnums, scipy_format=None, **kw):
        self._dense = dense_traced
        self._argnums = argnums
        self.scipy_format = scipy_format
        self._scipy = {}

        def sparse_traced(*args):
            return self._sparse_values(args)[0]

        sparse_traced.__wrapped__ = dense_traced  # argument names for error messages
        super().__init__(sparse_traced, **kw)

    def _sparse_values(self, args):
        """(values, (patterns, treedef)): the Jacobian's structural nonzeros and where they sit."""
        nums = _check_argnums(self._argnums, len(args))
        leaves, treedef = outputs_of(self._dense(*args), whole=True)
        # the differentiated leaves, in block order: a tree argument has a block per leaf
        wrt = [leaf for i in nums for leaf in flatten_tree(args[i])[0]]
        values, patterns = [], []
        for j, J in enumerate(leaves):  # one block per (output, differentiated leaf), leaves varying fastest
            arg = wrt[j % len(wrt)]
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

    scipy_format = None  # "csr" or "csc": one sample's Jacobian as a reused SciPy matrix
    _scipy = None

    def _of_leaves(self, flat_fn, axes, defs):
        """The sparse Jacobian for arguments that are trees (``defs``), on their
        leaves: the dense Jacobian of the rebuilt trees, a block per leaf."""
        dense = self._dense

        def dense_of_leaves(*leaves):
            return dense(*rebuild_trees(defs, leaves))

        dense_of_leaves.__name__ = getattr(dense, "__name__", "f")
        starts = np.cumsum([0] + [n for _, n in defs])
        nums = _check_argnums(self._argnums, len(defs))
        leaf_nums = tuple(j for i in nums for j in range(starts[i], starts[i + 1]))
        return SparseTransformed(dense_of_leaves, leaf_nums, in_axes=axes, backend=self.backend, name=self.name)

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

    def __call__(self, *args, out=None, start=0, stop=None, copy=False, **static):
        if static:
            return self.with_static(static)(*args, out=out, start=start, stop=stop, copy=copy)
        one = self.one_sample
        if one is not None and out is None and start == 0 and stop is None and not copy:
            call = one.lookup(args)
            if call is not None:
                return call(args)
        if _has_traced(args):
            raise TypeError("a sparse Jacobian cannot be used inside a traced function; use sparse=False")
        if any(isinstance(a, (tuple, list, dict)) for a in args):  # argument trees: a variant on their leaves
            if self.scipy_format is not None:
                raise TypeError(f"sparse={self.scipy_format!r} takes arrays: one SciPy matrix per call needs one "
                                "argument to differentiate; pass the tree's leaves as arguments")
            return tree_call(self, args, self._of_leaves)(out=out, start=start, stop=stop)
        if self.one_sample is None:
            return self._batched(args, out, start, stop)
        if (start, stop) != (0, None):
            raise TypeError("start and stop slice a batch; this transform takes one sample (in_axes=None)")
        result = self.one_sample(args, out)
        if self.scipy_format is None:
            return result
        return _map_leaves(result, lambda m: m.copy()) if copy else result

    def _batched(self, args, out, start=0, stop=None):
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
        if self.scipy_format is not None:  # one sample: the matrices of this signature, refilled
            mats = self._matrices(k, checked[3])
            for m, v in zip(mats, leaves):
                m.fill(v)
            return unflatten(treedef, [m.matrix for m in mats])
        return unflatten(treedef, [SparseJacobian(v, *p) for v, p in zip(leaves, patterns)])

    def _matrices(self, k, dtype):
        key = (id(k), np.dtype(dtype).name)
        mats = self._scipy.get(key)
        if mats is None:
            mats = self._scipy[key] = [_ScipyJacobian(self.scipy_format, *p, dtype) for p in k.sparsity[0]]
        return mats

    def _fast(self, k, checked):
        call = k.fast_one_sample(checked)
        if call is None:
            return None
        patterns, treedef = k.sparsity
        if self.scipy_format is None:
            def sparse_call(args):
                leaves, _ = _flatten_values(call(args))
                return unflatten(treedef, [SparseJacobian(v.reshape(1, -1), *p) for v, p in zip(leaves, patterns)])

            return sparse_call
        mats = self._matrices(k, checked[3])

        def scipy_call(args):
            call(args, [m.target() for m in mats])
            for m in mats:
                m.settle()
            return unflatten(treedef, [m.matrix for m in mats])

        return scipy_call

    def _export_extra(self, k):
        patterns, treedef = k.sparsity
        if len(patterns) != 1:
            raise ValueError(f"export: this sparse Jacobian has {len(patterns)} blocks (several outputs or "
                             "argnums); export each block as its own sparse Jacobian, e.g. "
                             "jacobian(lambda *a: f(*a)[k], argnums=i, sparse=True)")
        return {"sparsity": patterns[0]}


def _placed(J):
    """(values node, sorted flat positions) when ``J`` is a 1-D tensor placed
    into zeros at constant positions (an array-level Jacobian)."""
    return aops.placed(J.node) if isinstance(J, Whole) else None


def _flatten_values(values):
    return flatten_tree(values)


def jacobian(f, argnums=0, *, in_axes=0, mode="auto", backend="auto", sparse=False, has_aux=False):
    """Batched Jacobian of the per-sample function ``f``.

    Returns a callable.  Called on arrays whose batched arguments carry the
    batch axis given by ``in_axes`` (``None`` for arguments shared by every
    sample; ``in_axes=None``, no batched argument, takes one sample and
    returns per-sample shapes, as ``jax.jacfwd``; arguments and outputs may be
    tuples, lists and dicts, a list being a list of outputs, as in JAX),
    it returns the Jacobian of shape ``(B, *out_shape, *in_shape)``,
    a tuple for several ``argnums``, nested in a tuple when ``f`` returns a
    tuple.  Called on traced arguments (inside another traced function) it
    returns traced values, so ``jacobian(jacobian(f))`` is a Hessian.
    ``mode`` is ``"auto"`` (the sweep that builds fewer statements: both are
    built and measured when their counted estimates are within 4x, or within
    256 terms of that on small graphs, else the estimate decides), ``"fwd"``
    or ``"rev"``.  With ``sparse=True`` the kernel
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
    if has_aux and sparse:
        raise ValueError("has_aux=True and sparse= do not go together: take the sparse Jacobian of the output alone")
    traced = _with_aux(f, lambda main: traced_jacobian(main, nums, multi, mode)) if has_aux else \
        traced_jacobian(f, nums, multi, mode)
    name = f"jacobian_{getattr(f, '__name__', 'f')}"
    functools.update_wrapper(traced, f, assigned=("__doc__",), updated=())
    traced.__name__ = traced.__qualname__ = name
    if sparse not in (False, True, "csr", "csc"):
        raise ValueError(f"sparse must be False, True, 'csr' or 'csc', got {sparse!r}")
    if sparse in ("csr", "csc") and not batches_nothing(in_axes):
        raise ValueError(f"sparse={sparse!r} gives one SciPy matrix per call, for one sample: use in_axes=None "
                         "(no batched argument), or sparse=True for a batch")
    def remake(g):
        return jacobian(g, argnums, in_axes=in_axes, mode=mode, backend=backend, sparse=sparse, has_aux=has_aux)

    if sparse:
        return _remakeable(SparseTransformed(traced, nums, scipy_format=sparse if sparse in ("csr", "csc") else None,
                                             in_axes=in_axes, backend=backend, name=name), f, remake)
    return _remakeable(Transformed(traced, in_axes=in_axes, backend=backend, name=name), f, remake)


def sparsity(f, *args, argnums=0):
    """The structural sparsity pattern of ``f``'s Jacobian with respect to
    argument ``argnums``, for one sample shaped like ``args``, as a
    ``scipy.sparse.csr_matrix`` of ones (rows: the flattened output; columns:
    the flattened argument).  It comes from tracing alone: nothing is compiled
    or evaluated, so it fits SciPy's ``jac_sparsity`` (``solve_ivp``'s BDF and
    Radau, ``least_squares``).

    >>> import numpy as np, symjac
    >>> def f(y):
    ...     return np.concatenate([y[:1] ** 2, y[1:] * y[:-1]])
    >>> symjac.sparsity(f, np.zeros(4)).toarray().astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])
    """
    import scipy.sparse as sp

    if not isinstance(argnums, (int, np.integer)) or isinstance(argnums, bool):
        raise TypeError(f"sparsity: argnums must be one int, got {argnums!r}")
    t = jacobian(f, argnums, sparse=True, backend="numpy")
    k = t.kernel_for(*[np.asarray(a)[None] for a in args])  # traced and lowered; never compiled
    patterns, _ = k.sparsity
    if len(patterns) != 1:
        raise ValueError(f"sparsity: f returns {len(patterns)} outputs; it needs one array")
    rows, cols, out_shape, in_shape = patterns[0]
    m, n = math.prod(out_shape), math.prod(in_shape)
    indptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
    return sp.csr_matrix((np.ones(len(rows)), cols.astype(np.int64), indptr), shape=(m, n))


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


def _with_aux(f, traced_of_main):
    """``has_aux=True``: ``f`` returns ``(output, aux)``; the transform of the output
    comes back with ``aux`` beside it, ``(result, aux)``, in the same kernel."""

    def split(result):
        if not isinstance(result, tuple) or len(result) != 2:
            raise ValueError("has_aux=True needs f to return a pair (output, aux), got "
                             + (f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__))
        return result

    def main(*args):
        return split(f(*args))[0]

    traced_main = traced_of_main(main)

    def traced(*args):
        aux = split(f(*args))[1]
        return traced_main(*args), aux

    return traced


def gradient(f, argnums=0, *, in_axes=0, backend="auto", has_aux=False):
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
    scalar_f = _scalar(f)
    nums, multi = _normalize_argnums(argnums)
    if has_aux:
        t = _transform(_with_aux(f, lambda main: traced_jacobian(_scalar(main), nums, multi, "auto")), f,
                       "gradient", in_axes, backend)
    else:
        t = _transform(traced_jacobian(scalar_f, nums, multi, "auto"), f, "gradient", in_axes, backend)
    return _remakeable(t, f, lambda g: gradient(g, argnums, in_axes=in_axes, backend=backend, has_aux=has_aux))


def _scalar(f):
    def scalar_f(*args):
        result = f(*args)
        shape = np.shape(as_nodes(result)) if not isinstance(result, tuple) else "a tuple"
        if shape != ():
            raise ValueError(f"gradient needs f to return a scalar per sample, got {shape}; "
                             "use symjac.jacobian for array outputs")
        return result

    return scalar_f


def hessian(f, argnums=0, *, in_axes=0, backend="auto", has_aux=False):
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

    def hess(g):
        return traced_jacobian(traced_jacobian(g, nums, multi, "auto"), nums, multi, "auto")

    t = _transform(_with_aux(f, hess) if has_aux else hess(f), f, "hessian", in_axes, backend)
    return _remakeable(t, f, lambda g: hessian(g, argnums, in_axes=in_axes, backend=backend, has_aux=has_aux))


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
    return _remakeable(_transform(traced_divergence(f, num, mode), f, "divergence", in_axes, backend), f,
                       lambda g: divergence(g, argnums, in_axes=in_axes, mode=mode, backend=backend))


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
    return _remakeable(_transform(traced_laplacian(f, num), f, "laplacian", in_axes, backend), f,
                       lambda g: laplacian(g, argnums, in_axes=in_axes, backend=backend))


def _flat_nodes(arrays):
    return [n for a in arrays for n in a.ravel()]


def _like(v, i, t, what):
    """Tangent/cotangent ``t`` as nodes shaped like argument ``i`` of ``v``."""
    nodes = as_nodes(t)
    want = v.arrays[i].shape if isinstance(i, int) else i
    if nodes.shape != tuple(want):
        raise ValueError(f"{what} has per-sample shape {nodes.shape}, but it must match {tuple(want)}")
    return nodes


def _values(v):
    """``f``'s outputs (traced arrays, real arguments substituted back)."""
    return [TracedArray(v.substitute(np.array(list(o.ravel()), dtype=object).reshape(o.shape))) for o in v.outs]


def _leaf_tangents(v, nums, tangents, what):
    """Tangent (or ``v``) nodes for the differentiated leaves of ``v``, from trees
    shaped like the arguments at ``nums``."""
    nodes = []
    for i, t in zip(nums, tangents):
        d, leaves = v.groups[i]
        parts, tdef = flatten_tree(t) if d != "*" else ([t], "*")
        if tdef != d:
            raise ValueError(f"{what} {i} does not have the structure of its argument")
        for j, part in zip(leaves, parts):
            nodes.append(_like(v, j, part, f"{what} {i}"))
    return _flat_nodes(nodes)


def traced_jvp(f, nargs):
    """(f(*primals), J(primals) @ tangents) as a function of (*primals, *tangents);
    primals may be trees, each tangent shaped like its primal."""

    def g(*args):
        primals, tangents = args[:nargs], args[nargs:]
        v = _Variables(f, primals, tuple(range(nargs)))
        t = _leaf_tangents(v, range(nargs), tangents, "tangent")
        flat = jvp_nodes(_flat_nodes(v.outs), v.flat_in, t)
        tan, r = [], 0
        for o in v.outs:
            tan.append(TracedArray(v.substitute(np.array(flat[r: r + o.size], dtype=object).reshape(o.shape))))
            r += o.size
        return unflatten(v.treedef, _values(v)), unflatten(v.treedef, tan)

    return g


def traced_vjp(f, nargs):
    """(f(*primals), cotangents of the primals) as a function of (*primals, cotangent):
    the cotangent has f's output structure; a tree primal gets a tree cotangent."""

    def g(*args):
        primals, ct = args[:nargs], args[nargs:]
        v = _Variables(f, primals, tuple(range(nargs)))
        leaves = flatten_like(ct[0], v.treedef, "the cotangent")  # by structure and keys, never by position
        seeds = _flat_nodes([_like(v, o.shape, c, f"cotangent {k}") for k, (o, c) in enumerate(zip(v.outs, leaves))])
        flat = vjp_nodes(_flat_nodes(v.outs), v.flat_in, seeds)
        grads, c = [], 0
        for j in v.leaf_nums:
            size = v.arrays[j].size
            grads.append(TracedArray(v.substitute(np.array(flat[c: c + size], dtype=object)
                                                  .reshape(v.arrays[j].shape))))
            c += size
        return unflatten(v.treedef, _values(v)), tuple(v.regroup(range(nargs), grads))

    return g


def _cached_transform(kind, f, nargs, axes, backend, make):
    """The transform ``make()`` of ``f``, kept for the next call with a function of
    the same code and the same captured values (`symjac.dl.function_key`: a
    changed closure or global makes a new one), the same number of primals
    and the same axes."""
    from symjac.dl import _frozen, function_key

    key = (kind, function_key(f), nargs, static_key(axes), backend)
    t = _TRANSFORMS.get(key)
    if t is None:
        t = make()
        _TRANSFORMS[_frozen(key)] = t  # captured arrays copied: a later change in place is a new key
        if len(_TRANSFORMS) > 64:
            _TRANSFORMS.pop(next(iter(_TRANSFORMS)))
    return t


_TRANSFORMS = {}  # (kind, function key, primals, axes, backend) -> Transformed: jvp and vjp do not re-trace


def _primal_axes(in_axes, n):
    if batches_nothing(in_axes):
        return None
    return tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * n


def jvp(f, primals, tangents, *, in_axes=0, backend="auto"):
    """Jacobian-vector products, as ``jax.jvp``: ``(f(*primals), J @ tangents)`` for
    every sample, evaluated now, in one kernel with one forward sweep (no
    Jacobian is built).  ``primals`` and ``tangents`` are tuples; a tangent
    is batched like its primal (``in_axes``; ``None`` for a shared primal
    gives a shared tangent).  The transform is kept for the next call with
    the same ``f`` (the same function object).

    >>> import numpy as np, symjac
    >>> f = lambda x: np.array([x[0] * x[1], np.sin(x[1])])
    >>> y, t = symjac.jvp(f, (np.array([[2.0, 0.0]]),), (np.array([[1.0, 1.0]]),), backend="numpy")
    >>> y.tolist(), t.tolist()
    ([[0.0, 0.0]], [[2.0, 1.0]])
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primal(s) but {len(tangents)} tangent(s)")
    axes = _primal_axes(in_axes, len(primals))
    t = _cached_transform("jvp", f, len(primals), axes, backend, lambda: Transformed(
        _named(traced_jvp(f, len(primals)), f, "jvp"), in_axes=None if axes is None else axes + axes,
        backend=backend, name=f"jvp_{getattr(f, '__name__', 'f')}"))
    return t(*primals, *tangents)


def vjp(f, *primals, in_axes=0, backend="auto"):
    """Vector-Jacobian products, as ``jax.vjp``: ``(f(*primals), pullback)``, where
    ``pullback(cotangent)`` returns the tuple of ``cotangent @ J`` for each
    argument, for every sample (a compiled kernel: one reverse sweep, the
    value and the sweep fused; no Jacobian is built).  The cotangent has
    ``f``'s output structure and shapes, batched along axis 0 when any primal
    is batched.

    >>> import numpy as np, symjac
    >>> f = lambda x, w: np.tanh(w @ x)
    >>> X, W = np.array([[1.0, 2.0]]), np.array([[0.5, -0.5], [1.0, 0.0]])
    >>> y, pullback = symjac.vjp(f, X, W, in_axes=(0, None), backend="numpy")
    >>> dx, dw = pullback(np.ones((1, 2)))
    >>> dx.shape, dw.shape
    ((1, 2), (1, 2, 2))
    """
    axes = _primal_axes(in_axes, len(primals))
    ct_axis = None if axes is None or all(a is None for a in axes) else 0
    t = _cached_transform("vjp", f, len(primals), axes, backend, lambda: Transformed(
        _named(traced_vjp(f, len(primals)), f, "vjp"), in_axes=None if axes is None else axes + (ct_axis,),
        backend=backend, name=f"vjp_{getattr(f, '__name__', 'f')}"))
    value = _cached_transform("value", f, len(primals), axes, backend, lambda: compile(
        f, in_axes=in_axes if axes is not None else None, backend=backend))(*primals)
    # the primals as they are now (JAX keeps its residuals): a later change in place does not reach the pullback
    kept = [map_tree(lambda a: np.array(a, copy=True) if isinstance(a, np.ndarray) else a, p) for p in primals]

    def pullback(cotangent):
        return t(*kept, cotangent)[1]

    return value, pullback


def hvp(f, argnums=0, *, in_axes=0, backend="auto"):
    """Hessian-vector products without the Hessian: ``hvp(f)(*args, v)`` is
    ``H(args) @ v`` for a scalar ``f``, the Hessian taken with respect to
    argument ``argnums``; ``v`` is shaped and batched like that argument.
    Forward over reverse: one gradient sweep, then one forward column along
    ``v`` through it, in one kernel.

    >>> import numpy as np, symjac
    >>> Hv = symjac.hvp(lambda x: x[0] ** 2 * x[1], backend="numpy")
    >>> Hv(np.array([[1.0, 3.0]]), np.array([[1.0, 0.0]])).tolist()
    [[6.0, 2.0]]
    """
    (num,) = _normalize_argnums(argnums)[0]

    def g(*args):
        primals, vec = args[:-1], args[-1]
        (i,) = _check_argnums((num,), len(primals))
        v = _Variables(f, primals, (i,))
        if len(v.outs) != 1 or v.outs[0].size != 1:
            raise ValueError("hvp needs f to return one scalar")
        (grad,) = jacobian_nodes(_flat_nodes(v.outs), v.flat_in, "rev")
        hv = jvp_nodes(list(grad), v.flat_in, _leaf_tangents(v, (i,), (vec,), "v"))
        blocks, c = [], 0
        for j in v.leaf_nums:
            size = v.arrays[j].size
            blocks.append(TracedArray(v.substitute(np.array(hv[c: c + size], dtype=object).reshape(v.arrays[j].shape))))
            c += size
        return v.regroup((i,), blocks)[0]

    if batches_nothing(in_axes):
        axes = None
    elif isinstance(in_axes, (tuple, list)):
        axes = tuple(in_axes) + (in_axes[num],)  # v is batched like its argument
    else:
        axes = in_axes
    return _remakeable(Transformed(_named(g, f, "hvp"), in_axes=axes, backend=backend,
                                   name=f"hvp_{getattr(f, '__name__', 'f')}"), f,
                       lambda h: hvp(h, argnums, in_axes=in_axes, backend=backend))


def value_and_gradient(f, argnums=0, *, in_axes=0, backend="auto", has_aux=False):
    """``(f(*args), gradient)`` of a scalar ``f`` in one kernel (the value is
    the gradient sweep's forward pass); conventions of `gradient`.

    >>> import numpy as np, symjac
    >>> vg = symjac.value_and_gradient(lambda x: np.sum(x ** 2), backend="numpy")
    >>> value, grad = vg(np.array([[1.0, 2.0]]))
    >>> value.tolist(), grad.tolist()
    ([5.0], [[2.0, 4.0]])
    """
    grad = gradient(f, argnums, has_aux=has_aux)

    def g(*args):
        if has_aux:  # ((value, aux), gradient), as jax.value_and_grad(has_aux=True)
            g_, aux = grad(*args)
            return (f(*args)[0], aux), g_
        return f(*args), grad(*args)

    return _remakeable(Transformed(_named(g, f, "value_and_gradient"), in_axes=in_axes, backend=backend,
                                   name=f"value_and_gradient_{getattr(f, '__name__', 'f')}"), f,
                       lambda h: value_and_gradient(h, argnums, in_axes=in_axes, backend=backend, has_aux=has_aux))


def _named(g, f, kind):
    g.__wrapped__ = f  # argument names for error messages
    g.__name__ = g.__qualname__ = f"{kind}_{getattr(f, '__name__', 'f')}"
    return g


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
    return _remakeable(Kernel(f, in_axes=in_axes, backend=backend, name=getattr(f, "__name__", "kernel")), f,
                       lambda g: compile(g, in_axes=in_axes, backend=backend))

