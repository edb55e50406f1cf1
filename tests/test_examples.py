"""The examples run and do what they say (short settings)."""

import re
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


def test_seed_cnn_example_small_batch(capsys):
    main = runpy.run_path(str(EXAMPLES / "seed_cnn.py"))["main"]
    Y, dYdX = main(["--batch", "4"])  # main asserts the finite-difference check itself
    out = capsys.readouterr().out
    assert "size of dYdX: (5, 16, 16, 3, 4)" in out
    err = re.search(r"max relative error against central differences on 6 entries: (\S+)", out)
    assert err and float(err.group(1)) < 1e-6
    assert dYdX.shape == (5, 16, 16, 3, 4)
    assert Y.shape == (5, 4) and np.allclose(Y.sum(axis=0), 1.0)


def test_ik_batch_example_reaches_its_targets():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import ik_batch
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(1)
    q_true = rng.uniform(-1.5, 1.5, (40, 7))
    targets = np.stack([ik_batch.flange(q) for q in q_true])
    q, err = ik_batch.solve(targets, q_true + rng.normal(scale=0.3, size=q_true.shape), iterations=150,
                            backend="numpy")
    assert np.all(err < 1e-9), err.max()
    assert np.allclose(np.stack([ik_batch.flange(x) for x in q]), targets, atol=1e-9)
