"""Argument and output trees (tuples, lists, dicts, nested), as in JAX: values
against the same computation on plain arrays, in_axes per leaf or subtree,
one-sample calls, and result shapes against JAX's (when JAX is installed)."""

import numpy as np
import pytest

import symjac

rng = np.random.default_rng(11)
P = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
X = rng.standard_normal((4, 2))


def model(x, p):
    return np.tanh(p["W"] @ x + p["b"])


def loss(x, p):
    return np.sum(model(x, p) ** 2)


def flat_loss(x, W, b):
    return loss(x, {"W": W, "b": b})


def test_gradient_with_respect_to_a_dict_of_weights():
    g = symjac.gradient(loss, argnums=1, in_axes=(0, None), backend="numpy")(X, P)
    assert set(g) == {"W", "b"}
    gW, gb = symjac.gradient(flat_loss, argnums=(1, 2), in_axes=(0, None, None), backend="numpy")(X, P["W"], P["b"])
    np.testing.assert_allclose(g["W"], gW, rtol=1e-14)
    np.testing.assert_allclose(g["b"], gb, rtol=1e-14)


def test_in_axes_per_subtree_and_nested_outputs():
    Pb = {"W": P["W"], "b": rng.standard_normal((4, 3))}  # a per-sample bias, shared weights
    k = symjac.compile(lambda x, p: {"y": model(x, p), "parts": [np.sum(x), (x * 2,)]},
                       in_axes=(0, {"W": None, "b": 0}), backend="numpy")
    out = k(X, Pb)
    assert set(out) == {"y", "parts"} and isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    np.testing.assert_allclose(out["y"], np.stack([model(X[i], {"W": P["W"], "b": Pb["b"][i]}) for i in range(4)]))
    np.testing.assert_allclose(out["parts"][1][0], X * 2)
    with pytest.raises(ValueError, match=r"in_axes\[1\] is \{'W': None\}"):
        k2 = symjac.compile(lambda x, p: model(x, p), in_axes=(0, {"W": None}), backend="numpy")
        k2(X, Pb)


def test_list_arguments_and_one_sample():
    J = symjac.jacobian(lambda xs: xs[0] * xs[1], backend="numpy")([X, 2 * X])
    assert isinstance(J, list) and len(J) == 2
    np.testing.assert_allclose(J[0], np.einsum("bi,ij->bij", 2 * X, np.eye(2)))
    one = symjac.gradient(loss, argnums=1, in_axes=None, backend="numpy")
    g1 = one(X[1], P)
    np.testing.assert_allclose(g1["W"], symjac.gradient(loss, argnums=1, in_axes=(0, None), backend="numpy")(X, P)["W"][1])


def test_divergence_and_laplacian_over_a_tree():
    T = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal((3, 3))}
    d = symjac.divergence(lambda t: {"a": t["a"] ** 2 * t["b"][0], "b": np.sin(t["b"])}, backend="numpy")(T)
    np.testing.assert_allclose(d, 2 * T["a"].sum(1) * T["b"][:, 0] + np.cos(T["b"]).sum(1), rtol=1e-14)
    L = symjac.laplacian(lambda t: np.sum(t["a"] ** 3) + np.sum(np.sin(t["b"])), backend="numpy")(T)
    np.testing.assert_allclose(L, 6 * T["a"].sum(1) - np.sin(T["b"]).sum(1), rtol=1e-13)
    with pytest.raises(ValueError, match="divergence needs f to return an array \\(or tree\\) shaped like"):
        symjac.divergence(lambda t: t["a"], backend="numpy")(T)


def test_shapes_match_jax():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    jax.config.update("jax_enable_x64", True)

    def jmodel(x, p):
        return {"y": jnp.tanh(p["W"] @ x + p["b"]), "s": [jnp.sum(x), (x * 2,)]}

    def smodel(x, p):
        return {"y": np.tanh(p["W"] @ x + p["b"]), "s": [np.sum(x), (x * 2,)]}

    ours = symjac.jacobian(smodel, argnums=(0, 1), in_axes=(0, None), backend="numpy")(X, P)
    theirs = jax.vmap(jax.jacfwd(jmodel, argnums=(0, 1)), in_axes=(0, None))(X, P)
    ours_leaves, ours_def = jax.tree_util.tree_flatten(ours)
    theirs_leaves, theirs_def = jax.tree_util.tree_flatten(theirs)
    assert ours_def == theirs_def
    for a, b in zip(ours_leaves, theirs_leaves):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-12, atol=1e-14)


def test_jvp_vjp_hvp_with_dict_arguments():
    dP = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    y, t = symjac.jvp(model, (X, P), (np.zeros_like(X), dP), in_axes=(0, None), backend="numpy")
    JW, Jb = symjac.jacobian(lambda x, W, b: model(x, {"W": W, "b": b}), argnums=(1, 2), in_axes=(0, None, None),
                             backend="numpy")(X, P["W"], P["b"])
    np.testing.assert_allclose(t, np.einsum("bijk,jk->bi", JW, dP["W"]) + np.einsum("bij,j->bi", Jb, dP["b"]),
                               rtol=1e-13, atol=1e-14)
    y, pullback = symjac.vjp(model, X, P, in_axes=(0, None), backend="numpy")
    ct = rng.standard_normal(y.shape)
    dx, dp = pullback(ct)
    assert set(dp) == {"W", "b"}
    np.testing.assert_allclose(dp["W"], np.einsum("bi,bijk->bjk", ct, JW), rtol=1e-13, atol=1e-14)
    hv = symjac.hvp(loss, argnums=1, in_axes=(0, None), backend="numpy")(X, P, dP)
    H = symjac.hessian(flat_loss, argnums=(1, 2), in_axes=(0, None, None), backend="numpy")(X, P["W"], P["b"])
    want_b = np.einsum("bijk,jk->bi", H[1][0], dP["W"]) + np.einsum("bij,j->bi", H[1][1], dP["b"])
    np.testing.assert_allclose(hv["b"], want_b, rtol=1e-12, atol=1e-13)


def test_dlfeval_with_a_dict_of_weights():
    Xc = rng.standard_normal((2, 7))  # "CB": channels by batch

    def tree_loss(X, p):
        L = np.mean(np.tanh(p["W"] @ X + p["b"][:, None]) ** 2)
        return L, symjac.dlgradient(L, p)

    def flat(X, W, b):
        L = np.mean(np.tanh(W @ X + b[:, None]) ** 2)
        return L, symjac.dlgradient(L, W, b)

    L, g = symjac.dlfeval(tree_loss, Xc, P, batch_axis=(-1, None), backend="numpy")
    L2, (gW, gb) = symjac.dlfeval(flat, Xc, P["W"], P["b"], batch_axis=(-1, None, None), backend="numpy")
    assert set(g) == {"W", "b"}
    np.testing.assert_allclose(L, L2, rtol=1e-15)
    np.testing.assert_allclose(g["W"], gW, rtol=1e-15)
    np.testing.assert_allclose(g["b"], gb, rtol=1e-15)


def test_sparse_jacobian_and_dlfeval_export_with_tree_arguments(tmp_path):
    import importlib.util

    S = symjac.jacobian(model, argnums=1, sparse=True, in_axes=(0, None), backend="numpy")(X, P)
    D = symjac.jacobian(model, argnums=1, in_axes=(0, None), backend="numpy")(X, P)
    assert set(S) == {"W", "b"} and S["b"].nnz == 3
    for k in S:
        np.testing.assert_allclose(S[k].todense(), D[k], rtol=1e-15)

    def tree_loss(X, p):
        L = np.mean(np.tanh(p["W"] @ X + p["b"][:, None]) ** 2)
        return L, symjac.dlgradient(L, p)

    Xc = rng.standard_normal((2, 6))
    path = symjac.export_dlfeval(tmp_path / "tree_loss.py", tree_loss, Xc, P, batch_axis=(-1, None),
                                 backend="numpy")
    spec = importlib.util.spec_from_file_location("tree_loss", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    L, g = mod.evaluate(Xc, P)
    want = symjac.dlfeval(tree_loss, Xc, P, batch_axis=(-1, None), backend="numpy")
    np.testing.assert_allclose(L, want[0], rtol=1e-15)
    np.testing.assert_allclose(g["W"], want[1]["W"], rtol=1e-15)
    with pytest.raises(ValueError, match="argument 1 does not have the structure"):
        mod.evaluate(Xc, {"W": P["W"]})
