#!/usr/bin/env python3
"""Writes tests/data/stats/sharpe_inference.json: independent reference values for
eval/sharpe_inference (Sharpe moments, PSR, expected maximum Sharpe, deflated Sharpe, stationary
bootstrap indices and the bootstrap percentile interval of the Sharpe ratio).

Run from the repository root: python3 scripts/make_sharpe_fixture.py
(needs numpy and scipy; arch when available: the stationary-bootstrap index recursion is then arch's
own, fed the same random streams; otherwise a plain Python transcription of it, and the file says so).
Every case comes from a fixed numpy seed, so rerunning gives the same file for one library version.
"""
import json
import math
import os

import numpy as np
import scipy
from scipy import stats

EULER_GAMMA = float(np.euler_gamma)


def sharpe(x):
    x = np.asarray(x, dtype=float)
    sd = x.std(ddof=1)
    return float(x.mean() / sd) if sd > 0 else 0.0


def psr(sr, sr_star, n, skew, kurt):
    # Bailey & Lopez de Prado (2012/2014): kurt is the non-excess kurtosis.
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    return float(stats.norm.cdf((sr - sr_star) * math.sqrt(n - 1.0) / math.sqrt(radicand)))


def expected_max(trials, variance):
    if trials == 1:
        return 0.0
    return float(math.sqrt(variance) * ((1.0 - EULER_GAMMA) * stats.norm.ppf(1.0 - 1.0 / trials)
                                        + EULER_GAMMA * stats.norm.ppf(1.0 - 1.0 / (trials * math.e))))


def stationary_sample_python(indices, u, p):
    indices = indices.copy()
    n = indices.shape[0]
    for i in range(1, n):
        if u[i] < p:
            continue
        indices[i] = indices[i - 1] + 1
        if indices[i] == n:
            indices[i] = 0
    return indices


def stationary_sampler():
    try:
        import arch
        from arch.bootstrap.base import stationary_bootstrap_sample  # noqa: F401
        from arch.bootstrap import base

        def sample(indices, u, p):
            return base.stationary_bootstrap_sample(indices.astype(np.int64).copy(), u, p)
        return sample, "arch " + arch.__version__
    except Exception:  # arch not installed or its layout changed
        return stationary_sample_python, "python transcription of arch's stationary_bootstrap_sample"


def main():
    rng = np.random.default_rng(20261201)
    sampler, sampler_name = stationary_sampler()
    out = {"numpy_version": np.__version__, "scipy_version": scipy.__version__,
           "bootstrap_sampler": sampler_name, "moments": [], "psr": [], "expected_max": [],
           "dsr": [], "bootstrap_streams": [], "bootstrap_interval": {}}

    samples = [
        ("normal", 0.001 + 0.02 * rng.standard_normal(250)),
        ("student_t3", 0.0005 + 0.01 * rng.standard_t(3, 400)),
        ("lognormal_skew", rng.lognormal(0.0, 0.6, 120) - 1.1),
        ("negative_skew", -(rng.exponential(0.01, 300)) + 0.011),
        ("short", 0.01 * rng.standard_normal(5)),
    ]
    for name, x in samples:
        out["moments"].append({
            "name": name, "returns": x.tolist(), "mean": float(x.mean()), "sd": float(x.std(ddof=1)),
            "skewness": float(stats.skew(x, bias=True)),
            "kurtosis": float(stats.kurtosis(x, fisher=False, bias=True)), "sharpe": sharpe(x)})

    for sr, sr_star, n, skew, kurt in [(0.1, 0.0, 250, 0.0, 3.0), (0.05, 0.02, 1000, -1.5, 8.0),
                                       (-0.03, 0.0, 60, 0.4, 4.0), (0.2, 0.25, 40, 1.0, 5.0),
                                       (0.15811, 0.11318, 1250, -3.0, 10.0)]:
        out["psr"].append({"sharpe": sr, "benchmark": sr_star, "n": n, "skewness": skew,
                           "kurtosis": kurt, "value": psr(sr, sr_star, n, skew, kurt)})

    for trials, variance in [(1, 0.3), (2, 0.01), (10, 1.0), (100, 0.5 / 250), (1000, 0.004), (7, 0.0)]:
        out["expected_max"].append({"trials": trials, "variance": variance,
                                    "value": expected_max(trials, variance)})

    # Deflated Sharpe of one stream among trials: every trial a noisy strategy on the same T.
    for case, (t, trials, drift) in enumerate([(365, 12, 0.002), (200, 30, 0.0), (500, 5, 0.004)]):
        trial_returns = [drift * rng.random() + 0.02 * rng.standard_t(5, t) for _ in range(trials)]
        trial_sharpes = [sharpe(r) for r in trial_returns]
        best = int(np.argmax(trial_sharpes))
        x = trial_returns[best]
        variance = float(np.var(trial_sharpes, ddof=1))
        sr0 = expected_max(trials, variance)
        skew = float(stats.skew(x, bias=True))
        kurt = float(stats.kurtosis(x, fisher=False, bias=True))
        out["dsr"].append({"case": case, "returns": x.tolist(), "trials": trials,
                           "trial_sharpes": trial_sharpes, "trial_variance": variance,
                           "sharpe": sharpe(x), "expected_max": sr0,
                           "dsr": psr(sharpe(x), sr0, len(x), skew, kurt)})

    # Stationary bootstrap: the index recursion on given streams of starts and uniforms.
    for n, block in [(30, 4.0), (50, 1.0), (25, 10.0)]:
        for _ in range(3):
            starts = rng.integers(0, n, size=n)
            u = rng.random(n)
            idx = sampler(starts, u, 1.0 / block)
            out["bootstrap_streams"].append({"n": n, "block": block, "starts": starts.tolist(),
                                             "uniforms": u.tolist(), "indices": idx.tolist()})

    # The percentile interval of the Sharpe ratio over fixed resamples (numpy.percentile, linear).
    n, block, resamples = 40, 3.0, 200
    x = 0.002 + 0.015 * rng.standard_normal(n)
    draws = []
    for _ in range(resamples):
        draws.append(sampler(rng.integers(0, n, size=n), rng.random(n), 1.0 / block).tolist())
    boot = [sharpe(x[np.asarray(d)]) for d in draws]
    out["bootstrap_interval"] = {"returns": x.tolist(), "block": block, "resamples": draws,
                                 "confidence": 0.95, "estimate": sharpe(x),
                                 "low": float(np.percentile(boot, 2.5)),
                                 "high": float(np.percentile(boot, 97.5))}

    # Politis-White automatic block length: arch's optimal_block_length (b_sb), when arch is there.
    out["block_length"] = []
    try:
        from arch.bootstrap import optimal_block_length
    except Exception:
        optimal_block_length = None
    if optimal_block_length is not None:
        brng = np.random.default_rng(7)
        for name, n, phi in [("iid", 100, 0.0), ("ar_0.5", 500, 0.5), ("ar_0.9", 300, 0.9),
                             ("ar_0.3_short", 16, 0.3), ("ar_0.99_short", 50, 0.99),
                             ("ar_-0.4", 250, -0.4), ("ma_garchish", 400, None)]:
            e = brng.standard_normal(n + 200)
            x = np.zeros(n + 200)
            for t in range(1, n + 200):
                if phi is None:
                    x[t] = e[t] * (0.5 + abs(e[t - 1])) + 0.6 * e[t - 1]
                else:
                    x[t] = phi * x[t - 1] + e[t]
            x = 0.01 * x[200:]
            b = float(optimal_block_length(x)["stationary"].iloc[0])
            out["block_length"].append({"name": name, "x": x.tolist(), "b_sb": b})

    path = os.path.join("tests", "data", "stats", "sharpe_inference.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, "with", sampler_name)


if __name__ == "__main__":
    main()
