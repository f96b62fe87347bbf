import gc

import numpy as np
import pytest

import metatape as mt


def test_numpy_write_is_seen_by_the_tensor_and_back():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = mt.from_numpy(a)
    a[0, 0] = 42.0
    assert t.tolist()[0][0] == 42.0
    view = t.numpy()
    view[1, 2] = -7.0
    assert a[1, 2] == -7.0
    # the same memory, not a copy
    assert view.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    # ops read the shared memory
    assert mt.sum(t).item() == pytest.approx(a.sum())


def test_tensor_constructor_shares_and_tensor_function_copies():
    a = np.ones((2, 2), dtype=np.float64)
    shared = mt.Tensor(a)
    copied = mt.tensor(a)
    a[0, 0] = 5.0
    assert shared.numpy()[0, 0] == 5.0
    assert copied.numpy()[0, 0] == 1.0


def test_each_side_keeps_the_other_alive():
    a = np.arange(4, dtype=np.float64)
    t = mt.from_numpy(a)
    del a
    gc.collect()
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
    v = mt.zeros([3], dtype="float64").numpy()  # the tensor handle is gone; the array holds it
    gc.collect()
    v[:] = 2.0
    assert v.sum() == 6.0


def test_in_place_updates_by_the_library_are_seen_by_numpy():
    model = mt.nn.MLP([2, 3, 1], seed=1)
    w = model.parameters()["layer0.weight"]
    before = w.copy()
    learner = mt.MAML(model, lr=0.1, optimizer=mt.optim.SGD(lr=0.5))
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    task = mt.tasks.Task(x, x[:, :1], x, x[:, :1])
    learner.meta_train_step([task])
    assert not np.array_equal(w, before), "the NumPy view did not see the outer update"


def test_from_numpy_refuses_what_it_cannot_share_with_the_fix():
    with pytest.raises(mt.Error, match="not C-contiguous.*ascontiguousarray"):
        mt.from_numpy(np.ones((3, 4), dtype=np.float32).T)
    with pytest.raises(mt.Error, match="int32 cannot be shared.*astype"):
        mt.from_numpy(np.ones(3, dtype=np.int32))
    with pytest.raises(mt.Error, match="rank 5"):
        mt.from_numpy(np.ones((1, 1, 1, 1, 2), dtype=np.float32))
    # the copying constructor converts instead
    assert mt.tensor(np.ones((3, 4), dtype=np.float32).T).shape == (4, 3)
    assert mt.tensor(np.ones(3, dtype=np.int32)).dtype == "int64"


def test_properties_and_operators_match_numpy():
    rng = np.random.default_rng(0)
    a_np = rng.normal(size=(3, 4))
    b_np = rng.normal(size=(4, 2))
    a, b = mt.tensor(a_np), mt.tensor(b_np)
    assert a.shape == (3, 4) and a.dtype == "float64" and a.ndim == 2 and a.device == "cpu"
    np.testing.assert_allclose((a @ b).numpy(), a_np @ b_np, rtol=1e-12)
    np.testing.assert_allclose((a + 1.5).numpy(), a_np + 1.5)
    np.testing.assert_allclose((2.0 - a).numpy(), 2.0 - a_np)
    np.testing.assert_allclose((a * a).numpy(), a_np * a_np)
    np.testing.assert_allclose((1.0 / (a * a + 1.0)).numpy(), 1.0 / (a_np * a_np + 1.0))
    np.testing.assert_allclose((-a).numpy(), -a_np)
    np.testing.assert_allclose((a ** 2).numpy(), a_np ** 2)
    np.testing.assert_allclose(mt.exp(a).numpy(), np.exp(a_np))
    np.testing.assert_allclose(mt.tanh(a).numpy(), np.tanh(a_np))
    np.testing.assert_allclose(mt.sum(a, axis=1).numpy(), a_np.sum(axis=1))
    np.testing.assert_allclose(a.mean().item(), a_np.mean())
    np.testing.assert_allclose(mt.softmax(a).numpy(), np.exp(a_np) / np.exp(a_np).sum(1, keepdims=True))
    np.testing.assert_allclose(np.asarray(a.T), a_np.T)
    a.name = "a"
    assert a.name == "a"


def test_grad_backward_and_second_order():
    x = mt.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    y = mt.sum(x * x * x)  # dy/dx = 3x^2, d2y/dx2 = 6x
    (g,) = mt.grad(y, [x], create_graph=True)
    np.testing.assert_allclose(g.numpy(), [3.0, 12.0, 27.0])
    (h,) = mt.grad(mt.sum(g), [x])
    np.testing.assert_allclose(h.numpy(), [6.0, 12.0, 18.0])
    z = mt.sum(x * 2.0)
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])
    x.zero_grad()


def test_hvp_is_exact():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3))
    A = A + A.T
    x = mt.tensor(rng.normal(size=(3, 1)), requires_grad=True)
    v = mt.tensor(rng.normal(size=(3, 1)))
    At = mt.tensor(A)
    f = lambda x: 0.5 * mt.sum(x * (At @ x))  # Hessian A
    (hv,) = mt.hvp(f, [x], [v])
    np.testing.assert_allclose(hv.numpy(), A @ v.numpy(), rtol=1e-12)


def test_no_grad_and_enable_grad():
    x = mt.tensor([1.0], requires_grad=True)
    with mt.no_grad():
        assert not mt.is_grad_enabled()
        y = x * 2.0
        with mt.enable_grad():
            assert mt.is_grad_enabled()
    assert mt.is_grad_enabled()
    assert not y.requires_grad


def test_unused_input_names_the_parameter_and_allow_unused_gives_zeros():
    x = mt.tensor([1.0], requires_grad=True)
    w = mt.tensor([2.0], requires_grad=True)
    w.name = "head.weight"
    y = mt.sum(x * 3.0)
    with pytest.raises(mt.Error, match="head.weight"):
        mt.grad(y, [x, w], retain_graph=True)
    gx, gw = mt.grad(y, [x, w], allow_unused=True)
    assert gw.tolist() == [0.0]


def test_detect_anomaly_names_the_op():
    x = mt.tensor([-1.0], requires_grad=True)
    with mt.detect_anomaly():
        with pytest.raises(mt.Error, match="sqrt"):
            mt.sqrt(x)


def test_cpp_messages_reach_python():
    with pytest.raises(mt.Error, match=r"linear: input has 49 features, weight \(128, 50\) expects 50"):
        mt.linear(mt.zeros([2, 49]), mt.zeros([128, 50]), None)
    with pytest.raises(mt.Error, match="relu"):  # lists the choices
        mt.nn.MLP([2, 2], activation="swish")
    with pytest.raises(mt.Error, match="dtype: 'float16' is not supported"):
        mt.zeros([2], dtype="float16")
    assert issubclass(mt.Error, RuntimeError)


def test_scope_releases_the_graph():
    x = mt.tensor([1.0, 2.0], requires_grad=True)
    with mt.scope():
        y = mt.sum(mt.exp(x))
    with pytest.raises(mt.Error):
        mt.grad(y, [x])
