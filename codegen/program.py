"""`Program`: the plain-data contract between symjac and the printers.

A program computes, for every sample ``b`` of a batch slice ``[start,
stop)``, a straight line of scalar statements.  It knows nothing of tracing:
a test can build one by hand.

- ``inputs``: `Param` per kernel argument, a 2-D array ``(batch, size)`` when
  ``batched`` else a flat 1-D array shared by every sample;
- ``body``: `Stmt` list; ``op`` is ``"load"`` (args = input index, flat
  position), ``"const"`` (args = a float) or an op name of `symjac.ops`
  (args = names of earlier statements);
- ``stores``: ``(output index, flat position, name)``;
- ``outputs``: `Param` per output: batched ``(batch, size)``, or with
  ``reduce=True`` a flat ``(size,)`` accumulator to which every sample of
  the slice adds its value (a sum over the batch, computed in the kernel;
  the caller zeroes it);
  ``zero_fill`` lists the outputs that must be zeroed per sample before the
  stores (their unstored entries are structural zeros).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Param", "Stmt", "Program", "BOOL_OPS", "TENSOR_OPS"]

BOOL_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"})
# Tensor statements (attr in brackets): loadblock [input k, flat offset], pack [-],
# elem [flat index], bcast [(shape, dims)], tsum/tmax/tmin [axes], reshape [shape],
# transpose [perm], einsum [subscripts], conv2d [(stride, pads)],
# conv2d_bx [(stride, pads, (H, W))], conv2d_bw [(stride, pads, (kh, kw))].
# Any other op with a non-empty shape is elementwise (scalar arguments broadcast).
TENSOR_OPS = frozenset({"loadblock", "pack", "elem", "bcast", "tsum", "tmax", "tmin", "reshape", "transpose", "einsum",
                        "conv2d", "conv2d_bx", "conv2d_bw"})


@dataclass(frozen=True)
class Param:
    size: int
    batched: bool = True
    reduce: bool = False


@dataclass(frozen=True)
class Stmt:
    """One statement.  Scalar statements have ``shape == ()``; a tensor
    statement names its per-sample ``shape`` and the op's attribute (see
    ``TENSOR_OPS``).  ``batched`` is False for a value that depends on no
    batched input (it may be computed once, outside the sample loop)."""

    name: str
    op: str
    args: tuple
    attr: object = None
    shape: tuple = ()
    batched: bool = True


@dataclass
class Program:
    inputs: list
    outputs: list
    body: list
    stores: list
    zero_fill: frozenset = field(default_factory=frozenset)
    title: str = "kernel"
    # (output index, flat position, tensor name, flat offset in the tensor, count)
    block_stores: list = field(default_factory=list)
    # arrays the caller passes after its own inputs (constant tensors of the model);
    # their Params are the last entries of ``inputs``
    hidden_inputs: list = field(default_factory=list)

    def has_tensors(self):
        return any(s.shape or s.op in TENSOR_OPS for s in self.body)

    def validate(self):
        """Check that every name is defined before use and every store is in range."""
        defined = set()
        for s in self.body:
            if s.op in ("load", "loadblock"):
                k, i = s.args
                n = 1 if s.op == "load" else _prod(s.shape)
                if not (0 <= k < len(self.inputs) and 0 <= i and i + n <= self.inputs[k].size):
                    raise ValueError(f"{s.op} {s.args} out of range")
            elif s.op != "const":
                missing = [a for a in s.args if a not in defined]
                if missing:
                    raise ValueError(f"statement {s.name} uses undefined {missing}")
            defined.add(s.name)
        for k, i, name in self.stores:
            if not (0 <= k < len(self.outputs) and 0 <= i < self.outputs[k].size):
                raise ValueError(f"store ({k}, {i}) out of range")
            if name not in defined:
                raise ValueError(f"store of undefined {name}")
        for k, i, name, off, n in self.block_stores:
            if not (0 <= k < len(self.outputs) and 0 <= i and i + n <= self.outputs[k].size):
                raise ValueError(f"block store ({k}, {i}, {n}) out of range")
            if name not in defined:
                raise ValueError(f"store of undefined {name}")
        return self


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n
