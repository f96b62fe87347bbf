import pytest

import metatape as mt


def test_benchmark_returns_plain_dicts_and_lists():
    market = mt.tasks.simulate(seed=1, bars=2500)
    report = mt.evaluate.benchmark(market, learners=["maml", "protonet"], shots=[5], steps=[1], episodes=20,
                                   meta_steps=10, validate_every=0, selection_episodes=0, walk_forward=False)
    assert isinstance(report["verdicts"], list) and isinstance(report["cells"], list)
    verdicts = {(v["family"], v["learner"]) for v in report["verdicts"]}
    assert verdicts == {("price_direction", "maml"), ("price_direction", "protonet")}
    for v in report["verdicts"]:
        assert v["verdict"] in ("skill", "no skill", "worse") and v["pairs"] == 20
        assert all(isinstance(value, (str, int, float, bool, dict, list)) for value in v.values())


def test_benchmark_errors():
    with pytest.raises(mt.Error, match="must be a metatape.tasks.Market"):
        mt.evaluate.benchmark(3)
    with pytest.raises(mt.Error, match="learner"):
        mt.evaluate.benchmark(mt.tasks.simulate(bars=1500), learners=["mamal"], episodes=5, meta_steps=2)
