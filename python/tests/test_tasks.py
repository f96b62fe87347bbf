import numpy as np
import pytest

import metatape as mt


def test_sinusoid_batches_are_numpy_and_deterministic():
    a = mt.tasks.sinusoid_batch(3, seed=7)
    b = mt.tasks.sinusoid_batch(3, seed=7)
    assert len(a) == 3 and a[0].kind == "regression" and a[0].family == "sinusoid"
    assert isinstance(a[0].support_x, np.ndarray) and a[0].support_x.shape == (10, 1)
    assert a[0].support_x.dtype == np.float32
    np.testing.assert_array_equal(a[2].query_y, b[2].query_y)
    assert mt.tasks.Sinusoid(support_rows=5, dtype="float64").sample().support_x.dtype == np.float64


def test_market_family_tasks():
    market = mt.tasks.simulate(seed=3, bars=1500)
    assert market.rows == 1500 and market.symbols[0] == "SIM0/USD"
    series = market.series(0)
    assert series["close"].shape == (1500,) and series["time_ms"].dtype == np.int64
    dist = mt.tasks.family("price_direction", market, support_size=10, query_size=12, seed=4)
    batch = dist.sample_batch(3)
    t = batch[0]
    assert t.kind == "classification" and t.num_classes == 3
    assert t.support_x.shape == (10, dist.feature_dim()) and t.query_y.shape == (12,)
    assert t.support_y.dtype == np.int64
    assert t.support_end_ms < t.query_begin_ms
    again = mt.tasks.family("price_direction", market, support_size=10, query_size=12, seed=4).sample_batch(3)
    np.testing.assert_array_equal(again[1].query_x, batch[1].query_x)
    assert "risk" in mt.tasks.family_names()


def test_a_learner_trains_on_market_tasks():
    dist = mt.tasks.family("market_regime", mt.tasks.simulate(seed=2, bars=1500), support_size=10, query_size=10)
    learner = mt.MAML(mt.nn.MLP([dist.feature_dim(), 32, 4]), lr=0.05)
    metrics = learner.meta_train_step(dist.sample_batch(4))
    assert metrics["query_accuracy"] is not None


def test_task_errors():
    with pytest.raises(mt.Error, match="kind: 'ranking' is not a kind"):
        mt.tasks.Task(np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)), np.zeros(2), kind="ranking")
    with pytest.raises(mt.Error, match="split: 'dev' is not a split"):
        mt.tasks.family("risk", mt.tasks.simulate(bars=1500), split="dev")
    with pytest.raises(mt.Error, match="price_direction"):
        mt.tasks.family("prices", mt.tasks.simulate(bars=1500))
