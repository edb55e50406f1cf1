"""Exported kernels: standalone modules that run where symjac cannot be imported.

Four models (a scalar kernel, a sparse Jacobian, an MLP with weights, a
dlfeval loss gradient) are exported, then evaluated in one subprocess in
which ``import symjac`` and ``import codegen`` fail, and compared with the
in-process results; the bytes of an export are the same in another process
(another hash seed); the exported ``evaluate`` checks its arguments as the
in-process kernel does.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symjac

rng = np.random.default_rng(5)
W1, b1, w2 = rng.standard_normal((16, 3)), rng.standard_normal(16), rng.standard_normal(16)
P = np.array([9.81, 0.1])


def pendulum(y, p):
    return np.array([y[1], -p[0] * np.sin(y[0]) - p[1] * y[1]])


def chain(x):
    return np.concatenate([x[:1] ** 2, np.sin(x[1:] * x[:-1]), np.exp(x[-1:])])


def mlp(x, W1, b1, w2):
    return w2 @ np.tanh(W1 @ x + b1)


def loss(X, W1, b1, w2):
    U = w2 @ np.tanh(W1 @ X + b1[:, None])
    L = np.mean(U ** 2) + 1e-3 * np.sum(W1 ** 2)
    return L, symjac.dlgradient(L, W1, b1, w2), [U]


def load(path):
    """Import an exported module by its file name, as ``import name`` would (Numba's
    cache finds a kernel's module by that name)."""
    name = os.path.basename(path)[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("exported")
    Y = rng.normal(size=(40, 2))
    X = rng.uniform(0.2, 1.5, (30, 5))
    Xm = rng.normal(size=(25, 3))
    Xl = rng.normal(size=(3, 5000))  # over 2 x 2048 samples: numba-parallel's threads and their batch sums
    k = symjac.compile(pendulum, in_axes=(0, None), backend="numba")
    S = symjac.jacobian(chain, sparse=True, backend="numpy")
    J = symjac.jacobian(mlp, in_axes=(0, None, None, None), backend="numba")
    cases = {
        "scalar": (k, (Y, P), lambda: k(Y, P), lambda: k.export(d / "scalar.py")),
        "sparse": (S, (X,), lambda: S(X).values, lambda: S.export(d / "sparse.py", X)),
        "mlp": (J, (Xm, W1, b1, w2), lambda: J(Xm, W1, b1, w2),
                lambda: J.export(d / "mlp.py", Xm, W1, b1, w2)),
        "dlfeval": (None, (Xl, W1, b1, w2),
                    lambda: symjac.dlfeval(loss, Xl, W1, b1, w2, batch_axis=(-1, None, None, None),
                                           backend="numba-parallel"),
                    lambda: symjac.export_dlfeval(d / "dlfeval.py", loss, Xl, W1, b1, w2,
                                                  batch_axis=(-1, None, None, None), backend="numba-parallel")),
    }
    want, paths = {}, {}
    for name, (_, args, run, export) in cases.items():
        want[name] = run()
        paths[name] = str(export())
        np.savez(d / f"{name}_in.npz", *args)
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        sys.modules["symjac"] = None  # import symjac fails here
        sys.modules["codegen"] = None
        import numpy as np

        def flat(r):
            if isinstance(r, (tuple, list)):
                return [x for e in r for x in flat(e)]
            return [np.asarray(r)]

        done = {{}}
        for name, path in json.loads(sys.argv[1]).items():
            spec = importlib.util.spec_from_file_location(name, path)
            mod = sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            args = np.load("{d}/" + name + "_in.npz")
            args = [args[f"arr_{{i}}"] for i in range(len(args.files))]
            res = mod.evaluate(*args)
            np.savez("{d}/" + name + "_out.npz", *flat(res))
            if name == "sparse":
                done["csr"] = mod.to_scipy(res, 3).toarray().tolist()
        print("DONE" + json.dumps(done))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], cwd=str(d), env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    extra = json.loads(proc.stdout.split("DONE", 1)[1])
    return cases, want, paths, d, extra, X


def _flat(r):
    if isinstance(r, (tuple, list)):
        return [x for e in r for x in _flat(e)]
    return [np.asarray(r)]


@pytest.mark.parametrize("name", ["scalar", "sparse", "mlp", "dlfeval"])
def test_exported_module_runs_without_symjac_and_matches(exported, name):
    cases, want, paths, d, extra, X = exported
    got = np.load(d / f"{name}_out.npz")
    got = [got[f"arr_{i}"] for i in range(len(got.files))]
    expect = _flat(want[name])
    assert len(got) == len(expect)
    for g, w in zip(got, expect):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
    source = open(paths[name]).read()
    assert "symjac" not in "".join(ln for ln in source.splitlines() if ln.startswith(("import", "from")))


def test_sparse_export_carries_the_pattern_and_a_scipy_helper(exported):
    cases, want, paths, d, extra, X = exported
    dense = symjac.jacobian(chain, backend="numpy")(X)
    np.testing.assert_allclose(np.array(extra["csr"]), dense[3], rtol=1e-13)
    mod = load(paths["sparse"])
    S = cases["sparse"][0](X)
    assert np.array_equal(mod.ROWS, S.rows) and np.array_equal(mod.COLS, S.cols)
    assert "structural nonzeros" in mod.__doc__


def test_export_bytes_are_deterministic_across_processes(tmp_path):
    J = symjac.jacobian(mlp, in_axes=(0, None, None, None), backend="numba")
    Xm = rng.normal(size=(4, 3))
    first = J.export(tmp_path / "a.py", Xm, W1, b1, w2).read_bytes()
    again = symjac.jacobian(mlp, in_axes=(0, None, None, None), backend="numba").export(
        tmp_path / "b.py", Xm, W1, b1, w2).read_bytes()
    assert first == again
    script = textwrap.dedent(f"""
        import numpy as np, symjac, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_export import mlp, W1, b1, w2
        J = symjac.jacobian(mlp, in_axes=(0, None, None, None), backend="numba")
        J.export({str(tmp_path / "c.py")!r}, np.zeros((4, 3)), W1, b1, w2)
    """)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "c.py").read_bytes() == first


def test_exported_evaluate_checks_arguments_and_slices(exported):
    cases, want, paths, d, extra, X = exported
    mod = load(paths["scalar"])
    Y = rng.normal(size=(6, 2))
    with pytest.raises(TypeError, match="evaluate takes 2 argument"):
        mod.evaluate(Y)
    with pytest.raises(ValueError, match="argument 'p' is shared and must have shape \\(2,\\)"):
        mod.evaluate(Y, np.ones(3))
    with pytest.raises(ValueError, match="argument 'y' has per-sample shape \\(3,\\)"):
        mod.evaluate(np.ones((6, 3)), P)
    with pytest.raises(ValueError, match="start <= stop"):
        mod.evaluate(Y, P, start=4, stop=2)
    with pytest.raises(ValueError, match="out\\[0\\] must be a NumPy array of shape \\(6, 2\\)"):
        mod.evaluate(Y, P, out=np.zeros((6, 3)))
    out = np.full((6, 2), np.nan)
    assert mod.evaluate(Y, P, out=out, start=1, stop=4) is out
    np.testing.assert_allclose(out[1:4], cases["scalar"][0](Y, P)[1:4], rtol=1e-15)
    assert np.isnan(out[0]).all() and np.isnan(out[4:]).all()
    assert "y: batched along axis 0, one sample of shape (2,)" in mod.__doc__


def test_export_refuses_what_it_cannot_write(tmp_path):
    k = symjac.compile(pendulum, in_axes=(0, None), backend="numpy")
    with pytest.raises(RuntimeError, match="after the first call"):
        k.export(tmp_path / "k.py")
    k(np.zeros((2, 2)), P)
    with pytest.raises(ValueError, match="must name a .py file"):
        k.export(tmp_path / "k.txt")
    with pytest.raises(ValueError, match="backend must be one of"):
        k.export(tmp_path / "k.py", backend="gpu")
    J = symjac.jacobian(pendulum, in_axes=(0, None), backend="numpy")
    with pytest.raises(ValueError, match="compiled 0 shapes; pass example arguments"):
        J.export(tmp_path / "j.py")


def test_one_sample_exports_take_one_sample(tmp_path):
    J = symjac.jacobian(pendulum, in_axes=None, sparse=True, backend="numpy")
    y = np.array([0.3, -0.2])
    want = J(y, P)
    mod = load(J.export(tmp_path / "one_jac.py", y, P))
    values = mod.evaluate(y, P)
    assert values.shape == (3,)
    np.testing.assert_allclose(mod.to_scipy(values).toarray(), want.todense()[0], rtol=1e-15)
    assert "y: one sample, shape (2,)" in mod.__doc__


def test_dlfeval_export_refuses_another_batch_size(tmp_path):
    def mean_loss(X, w):
        L = np.sum((w @ X) ** 2) / X.shape[-1]  # reads the batch size
        return L, symjac.dlgradient(L, w)

    X, w = rng.normal(size=(2, 4)), np.array([1.0, -0.5])
    mod = load(symjac.export_dlfeval(tmp_path / "mean_loss.py", mean_loss, X, w, batch_axis=(-1, None),
                                     backend="numpy"))
    want = symjac.dlfeval(mean_loss, X, w, batch_axis=(-1, None), backend="numpy")
    got = mod.evaluate(X, w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-15)
    with pytest.raises(ValueError, match="for batches of 4 samples, got 8"):
        mod.evaluate(rng.normal(size=(2, 8)), w)


def test_names_cannot_break_the_exported_source(tmp_path):
    def odd(x):
        return np.sin(x)

    odd.__name__ = 'o"""d\\d\x00\u00e9'
    k = symjac.compile(odd, backend="numpy")
    k(np.ones((2, 2)))
    mod = load(k.export(tmp_path / "odd.py"))
    np.testing.assert_allclose(mod.evaluate(np.ones((2, 2))), np.sin(np.ones((2, 2))))
