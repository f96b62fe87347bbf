"""Every learner trains a few steps on W1 / W2 shapes and its held-out loss goes down."""

import numpy as np
import pytest

import metatape as mt
from conftest import w1_batch


def held_out_loss(learner, tasks, steps):
    return float(np.mean([learner.evaluate(t, [steps])[0]["loss"] for t in tasks]))


def adam():
    return mt.optim.Adam(lr=0.005)


W2 = {
    "maml": lambda m: mt.MAML(m, lr=0.01, steps=1, optimizer=adam()),
    "fomaml": lambda m: mt.MAML(m, lr=0.01, steps=1, first_order=True, optimizer=adam()),
    "maml++": lambda m: mt.MAML(m, lr=0.01, steps=2, multi_step_loss=True, learn_inner_lrs=True,
                                first_order_until=5, optimizer=adam()),
    "meta-sgd": lambda m: mt.MetaSGD(m, lr=0.01, steps=1, optimizer=adam()),
    "reptile": lambda m: mt.Reptile(m, lr=0.02, steps=10, epsilon=1.0),
    "anil": lambda m: mt.ANIL(m, lr=0.01, steps=1, optimizer=adam()),
}


@pytest.mark.parametrize("kind", list(W2))
def test_gradient_learners_train_on_w2_sinusoids(kind):
    model = mt.nn.MLP([1, 40, 40, 1], seed=1)
    learner = W2[kind](model)
    assert learner.name == kind
    held_out = mt.tasks.Sinusoid(seed=100).sample_batch(16)
    before = held_out_loss(learner, held_out, learner.default_adapt_steps)
    tasks = mt.tasks.Sinusoid(seed=1)
    for _ in range(100):
        metrics = learner.meta_train_step(tasks.sample_batch(8))
    assert metrics["step"] == 100 == learner.meta_steps
    after = held_out_loss(learner, held_out, learner.default_adapt_steps)
    assert after < 0.9 * before, f"{kind}: held-out loss {before:.3f} -> {after:.3f}"


W1 = {
    "maml": lambda m: mt.MAML(m, lr=0.1, steps=1),
    "meta-sgd": lambda m: mt.MetaSGD(m, lr=0.1, steps=1),
    "anil": lambda m: mt.ANIL(m, lr=0.1, steps=1),
    "protonet": lambda m: mt.ProtoNet(m),
    "matching": lambda m: mt.MatchingNet(m, cosine_scale=5.0),
}


@pytest.mark.parametrize("kind", list(W1))
def test_learners_train_on_w1_classification(kind):
    sizes = [50, 128, 128, 3] if kind not in ("protonet", "matching") else [50, 128, 64]
    learner = W1[kind](mt.nn.MLP(sizes, seed=2))
    held_out = w1_batch(100, 8)
    steps = max(learner.default_adapt_steps, 0)
    before = held_out_loss(learner, held_out, steps)
    for i in range(15):
        metrics = learner.meta_train_step(w1_batch(i, 4))
    assert metrics["query_accuracy"] is not None
    after = held_out_loss(learner, held_out, steps)
    assert after < before, f"{kind}: held-out loss {before:.3f} -> {after:.3f}"


def test_meta_gradient_does_not_step_and_matches_what_meta_train_step_applies():
    model = mt.nn.MLP([1, 8, 1], seed=1)
    learner = mt.MAML(model, lr=0.01, steps=1, optimizer=mt.optim.SGD(lr=0.1))
    batch = mt.tasks.Sinusoid(seed=3).sample_batch(4)
    before = {k: v.copy() for k, v in model.parameters().items()}
    grads, metrics = learner.meta_gradient(batch)
    assert learner.meta_steps == 0 and metrics["step"] == 0
    for k, v in model.parameters().items():
        np.testing.assert_array_equal(v, before[k])
    learner.meta_train_step(batch)
    for k, v in model.parameters().items():
        np.testing.assert_allclose(v, before[k] - 0.1 * grads[k], rtol=1e-5, atol=1e-6)


def test_adapt_and_predict():
    model = mt.nn.MLP([1, 40, 40, 1], seed=1)
    learner = mt.MAML(model, lr=0.01, steps=5)
    task = mt.tasks.Sinusoid(seed=4).sample()
    adapted = learner.adapt(task.support_x, task.support_y)
    out = learner.predict(task.query_x)
    assert out.shape == (10, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out, learner.predict(task.query_x, adapted))
    assert set(adapted.parameters()) == set(model.names())
    # a 1-D target is taken as one output column
    learner.adapt(task.support_x, task.support_y[:, 0])


def test_protonet_adapt_infers_classes_from_labels():
    learner = mt.ProtoNet(mt.nn.MLP([50, 32, 16], seed=0))
    t = w1_batch(0, 1)[0]
    learner.adapt(t.support_x, t.support_y)
    assert learner.predict(t.query_x).shape == (45, 3)


def test_learner_errors_carry_the_cpp_message():
    learner = mt.MAML(mt.nn.MLP([1, 8, 1]), lr=0.01, fused=False)
    with pytest.raises(mt.Error, match="expected a list of metatape.tasks.Task"):
        learner.meta_train_step([1, 2])
    with pytest.raises(mt.Error, match="nothing adapted yet"):
        learner.predict(np.zeros((2, 1), dtype=np.float32))
    bad = mt.tasks.Task(np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32),
                        np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32))
    with pytest.raises(mt.Error, match="features"):
        learner.meta_train_step([bad])
    with pytest.raises(mt.Error, match="inner_steps must be >= 1"):
        mt.MAML(mt.nn.MLP([1, 8, 1]), steps=0)


def test_optimizer_steps_tensors_in_place():
    w = mt.tensor([1.0, 2.0], requires_grad=True)
    opt = mt.optim.SGD(lr=0.5)
    loss = mt.sum(w * w)
    (g,) = mt.grad(loss, [w])
    assert opt.step([w], [g])
    np.testing.assert_allclose(w.numpy(), [0.0, 0.0])
    assert mt.optim.Adam(lr=1e-2).kind == "adam"
