"""`Program`: the plain-data contract between symjac and the printers.

A program computes, for every sample ``b`` of a batch slice ``[start,
stop)``, a straight line of statements on scalars and per-sample tensors.
It knows nothing of tracing: a test can build one by hand.

- ``inputs``: `Param` per kernel argument, a 2-D array ``(batch, size)`` when
  ``batched`` else a flat 1-D array shared by every sample;
- ``body``: `Stmt` list; ``op`` is ``"load"`` (args = input index, flat
  position), ``"loadblock"`` (a tensor: input index and flat offset),
  ``"const"`` (args = a float), an *elementwise* op (one with a template in
  ``functions``; args = names of earlier statements; on tensors it applies
  entry by entry and scalar arguments broadcast) or a *structural* tensor op
  (its attribute in ``attr``; printed as a loop nest by the printers);
- ``functions``: elementwise op -> {printer target: template}, e.g.
  ``{"sin": {"numpy": "np.sin({0})"}}``; a target without a template uses
  the ``"numpy"`` one;
- ``stores``: ``(output index, flat position, name)``; ``block_stores``:
  ``(output index, flat position, tensor name, flat offset, count)``;
- ``outputs``: `Param` per output: batched ``(batch, size)``, or with
  ``reduce=True`` a flat ``(size,)`` accumulator to which every sample of
  the slice adds its value (a sum over the batch, computed in the kernel;
  the caller zeroes it); ``zero_fill`` lists the outputs that must be
  zeroed per sample before the stores (their unstored entries are
  structural zeros);
- ``hidden_inputs``: arrays the caller passes after its own inputs (the
  model's constant tensors); their Params are the last entries of ``inputs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Param", "Stmt", "Program", "STATEMENT_KINDS"]

STATEMENT_KINDS = frozenset({"load", "loadblock", "const"})  # statements that are not ops


# a printer target without its own template for an op uses the first of these that has one
TEMPLATE_FALLBACK = {"cuda": ("cuda", "numba", "numpy"), "numba": ("numba", "numpy")}


@dataclass(frozen=True)
class Param:
    size: int
    batched: bool = True
    reduce: bool = False


class Stmt(NamedTuple):
    """One statement.  Scalar statements have ``shape == ()``; a tensor
    statement names its per-sample ``shape``; ``attr`` is a structural op's
    attribute; ``dtype`` is ``"float"`` or ``"bool"``.  ``batched`` is False
    for a value that depends on no batched input (it may be computed once,
    outside the sample loop).  A named tuple (96 bytes, made without a
    dataclass's per-field ``__setattr__``): `symjac.lower` builds 10^6 of
    them in about 2 s (`benchmarks/RESULTS.md`)."""

    name: str
    op: str
    args: tuple
    attr: object = None
    shape: tuple = ()
    batched: bool = True
    dtype: str = "float"


@dataclass
class Program:
    inputs: list
    outputs: list
    body: list
    stores: list
    zero_fill: frozenset = field(default_factory=frozenset)
    title: str = "kernel"
    block_stores: list = field(default_factory=list)
    hidden_inputs: list = field(default_factory=list)
    functions: dict = field(default_factory=dict)

    def is_structural(self, stmt):
        """True for a tensor op printed as a loop nest (not a load, a constant or
        an elementwise op)."""
        return stmt.op not in STATEMENT_KINDS and stmt.op not in self.functions

    def has_tensors(self):
        return bool(self.structural_ops()) or any(s.shape or s.op == "loadblock" for s in self.body)

    def structural_ops(self):
        """The tensor ops of the program printed as loop nests."""
        return {s.op for s in self.body} - STATEMENT_KINDS - self.functions.keys()

    def template(self, op, target):
        """The printing template of elementwise ``op`` for ``target`` (or None)."""
        forms = self.functions.get(op)
        if forms is None:
            return None
        for t in TEMPLATE_FALLBACK.get(target, (target,)):
            if t in forms:
                return forms[t]
        return forms.get("numpy")

    def validate(self):
        """Check that every name is defined before use and every store is in range."""
        defined = set()
        for s in self.body:
            if s.op in ("load", "loadblock"):
                k, i = s.args
                n = 1 if s.op == "load" else _prod(s.shape)
                if not (0 <= k < len(self.inputs) and 0 <= i and i + n <= self.inputs[k].size):
                    raise ValueError(f"{s.op} {s.args} out of range")
            elif s.op != "const" and not defined.issuperset(s.args):
                missing = [a for a in s.args if a not in defined]
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
