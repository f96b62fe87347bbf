"""Second-order MAML meta-gradients computed by metatape equal PyTorch's, live, in float64."""

import numpy as np
import pytest

import metatape as mt
from conftest import w1_batch


def torch_mlp(torch, params, x, layers, activation):
    h = x
    for i in range(layers):
        h = torch.nn.functional.linear(h, params[2 * i], params[2 * i + 1])
        if i + 1 < layers:
            h = activation(h)
    return h


def torch_maml_gradient(torch, model, tasks, lr, steps, loss_fn):
    names = model.names()
    params = [torch.tensor(model.parameters()[n], requires_grad=True) for n in names]
    layers = len(names) // 2
    total = 0.0
    for task in tasks:
        phi = params
        sx, sy = torch.from_numpy(task.support_x), torch.from_numpy(task.support_y)
        qx, qy = torch.from_numpy(task.query_x), torch.from_numpy(task.query_y)
        for _ in range(steps):
            loss = loss_fn(torch_mlp(torch, phi, sx, layers, torch.relu), sy)
            grads = torch.autograd.grad(loss, phi, create_graph=True)
            phi = [p - lr * g for p, g in zip(phi, grads)]
        total = total + loss_fn(torch_mlp(torch, phi, qx, layers, torch.relu), qy)
    outer = total / len(tasks)
    return dict(zip(names, (g.numpy() for g in torch.autograd.grad(outer, params))))


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_second_order_w2_matches_torch(torch, steps):
    model = mt.nn.MLP([1, 40, 40, 1], dtype="float64", seed=3)
    learner = mt.MAML(model, lr=0.01, steps=steps)
    tasks = mt.tasks.Sinusoid(seed=5, dtype="float64").sample_batch(4)
    ours, _ = learner.meta_gradient(tasks)
    theirs = torch_maml_gradient(torch, model, tasks, 0.01, steps, torch.nn.functional.mse_loss)
    for name in model.names():
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-9, err_msg=name)


def test_maml_second_order_w1_matches_torch(torch):
    model = mt.nn.MLP([50, 128, 128, 3], dtype="float64", seed=4)
    learner = mt.MAML(model, lr=0.05, steps=2)
    tasks = w1_batch(7, 3, dtype=np.float64)
    ours, _ = learner.meta_gradient(tasks)
    theirs = torch_maml_gradient(torch, model, tasks, 0.05, 2, torch.nn.functional.cross_entropy)
    for name in model.names():
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-9, err_msg=name)


def test_raw_autograd_double_backward_matches_torch(torch):
    rng = np.random.default_rng(2)
    w_np, x_np = rng.normal(size=(4, 3)), rng.normal(size=(5, 3))
    w = mt.tensor(w_np, requires_grad=True)
    x = mt.tensor(x_np)
    loss = mt.sum(mt.tanh(x @ w.T) ** 3)
    (g,) = mt.grad(loss, [w], create_graph=True)
    (gg,) = mt.grad(mt.sum(g * g), [w])
    wt = torch.tensor(w_np, requires_grad=True)
    lt = (torch.tanh(torch.from_numpy(x_np) @ wt.T) ** 3).sum()
    (gt,) = torch.autograd.grad(lt, [wt], create_graph=True)
    (ggt,) = torch.autograd.grad((gt * gt).sum(), [wt])
    np.testing.assert_allclose(g.numpy(), gt.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(gg.numpy(), ggt.numpy(), rtol=0, atol=1e-10)
