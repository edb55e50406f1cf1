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

__all__ = ["Param", "Stmt", "Program", "BOOL_OPS"]

BOOL_OPS = frozenset({"lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"})


@dataclass(frozen=True)
class Param:
    size: int
    batched: bool = True
    reduce: bool = False


@dataclass(frozen=True)
class Stmt:
    name: str
    op: str
    args: tuple


@dataclass
class Program:
    inputs: list
    outputs: list
    body: list
    stores: list
    zero_fill: frozenset = field(default_factory=frozenset)
    title: str = "kernel"

    def validate(self):
        """Check that every name is defined before use and every store is in range."""
        defined = set()
        for s in self.body:
            if s.op == "load":
                k, i = s.args
                if not (0 <= k < len(self.inputs) and 0 <= i < self.inputs[k].size):
                    raise ValueError(f"load {s.args} out of range")
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
        return self
