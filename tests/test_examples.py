"""The examples run and do what they say (short settings)."""

import runpy
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_dljacobian_doc_example(capsys):
    runpy.run_path(str(EXAMPLES / "dljacobian_doc.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "size of dYdX: (5, 4, 4, 3, 128)" in out


def test_pinn_poisson_example_loss_falls():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import pinn_poisson
    finally:
        sys.path.pop(0)
    err, losses = pinn_poisson.main(["--steps", "300", "--points", "64"])
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:20])
    assert np.isfinite(err)
