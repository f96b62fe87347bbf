import numpy as np
import pytest

import metatape as mt


def test_save_load_round_trip(tmp_path):
    path = str(tmp_path / "maml.ckpt")
    model = mt.nn.MLP([1, 16, 1], seed=1)
    learner = mt.MAML(model, lr=0.01, steps=2)
    tasks = mt.tasks.Sinusoid(seed=2)
    for _ in range(3):
        learner.meta_train_step(tasks.sample_batch(4))
    learner.save(path)
    fresh = mt.MAML(mt.nn.MLP([1, 16, 1], seed=9), lr=0.01, steps=2)
    fresh.load(path)
    assert fresh.meta_steps == 3
    for name, value in learner.meta_parameters().items():
        np.testing.assert_array_equal(fresh.meta_parameters()[name], value)
    # and the Adam state came back: the next step is identical
    batch = tasks.sample_batch(4)
    a = learner.meta_train_step(batch)
    b = fresh.meta_train_step(batch)
    assert a["query_loss"] == b["query_loss"]
    for name, value in learner.meta_parameters().items():
        np.testing.assert_array_equal(fresh.meta_parameters()[name], value)


def test_load_refuses_another_learner_kind(tmp_path):
    path = str(tmp_path / "maml.ckpt")
    mt.MAML(mt.nn.MLP([1, 8, 1])).save(path)
    with pytest.raises(mt.Error, match="meta-sgd|maml"):
        mt.MetaSGD(mt.nn.MLP([1, 8, 1])).load(path)
    with pytest.raises(mt.Error, match="missing|No such|cannot open|does not exist"):
        mt.MAML(mt.nn.MLP([1, 8, 1])).load(str(tmp_path / "absent.ckpt"))


def test_inference_model_loads_a_learner_checkpoint(tmp_path):
    path = str(tmp_path / "maml.ckpt")
    model = mt.nn.MLP([1, 16, 1], seed=1)
    learner = mt.MAML(model, lr=0.01, steps=3)
    learner.meta_train_step(mt.tasks.Sinusoid(seed=2).sample_batch(4))
    learner.save(path)
    im = mt.InferenceModel.load(path)
    assert im.learner == "maml" and im.in_features == 1 and im.task_kind == "regression"
    task = mt.tasks.Sinusoid(seed=5).sample()
    adapted = im.adapt(task.support_x, task.support_y)
    ours = im.predict(adapted, task.query_x)
    learner.adapt(task.support_x, task.support_y)
    np.testing.assert_allclose(ours, learner.predict(task.query_x), rtol=1e-6, atol=1e-6)
