#!/usr/bin/env python3
"""Writes tests/data/stats/reference.json: reference values from scipy for eval/statistics.

Run from the repository root: python3 scripts/make_stats_fixtures.py
Every case is generated from a fixed numpy seed, so rerunning gives the same file (for one scipy
version; the file records it).
"""
import json
import os

import numpy as np
import scipy
from scipy import special, stats


def holm(p):
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def main():
    rng = np.random.default_rng(20261126)
    out = {"scipy_version": scipy.__version__, "special": [], "summaries": [], "paired": []}

    for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (10.0, 0.5, 0.9), (50.0, 0.5, 0.97),
                    (0.5, 50.0, 0.01), (1.0, 1.0, 0.25), (299.5, 0.5, 0.999)]:
        out["special"].append({"fn": "betainc", "a": a, "b": b, "x": x,
                               "value": float(special.betainc(a, b, x))})
    for t, df in [(0.0, 5), (1.3, 3), (-2.5, 10), (4.0, 1), (-0.7, 29.0), (2.1, 599), (8.0, 2.5)]:
        out["special"].append({"fn": "t_cdf", "t": t, "df": df, "value": float(stats.t.cdf(t, df))})
    for p, df in [(0.975, 1), (0.975, 4), (0.975, 29), (0.975, 599), (0.995, 9), (0.05, 7),
                  (0.999, 2.5), (0.6, 15)]:
        out["special"].append({"fn": "t_ppf", "p": p, "df": df, "value": float(stats.t.ppf(p, df))})
    for p in [1e-10, 0.001, 0.02, 0.3, 0.5, 0.8, 0.975, 0.99999]:
        out["special"].append({"fn": "norm_ppf", "p": p, "value": float(stats.norm.ppf(p))})

    for n in [2, 3, 10, 30, 600]:
        x = rng.normal(0.5, 2.0, size=n)
        m = float(np.mean(x))
        lo, hi = stats.t.interval(0.95, n - 1, loc=m, scale=stats.sem(x))
        out["summaries"].append({"values": x.tolist(), "mean": m, "std": float(np.std(x, ddof=1)),
                                 "ci_low": float(lo), "ci_high": float(hi)})

    def paired_case(name, a, b):
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        d = a - b
        nz = d[d != 0]
        _, counts = np.unique(np.abs(nz), return_counts=True)
        exact = len(nz) == len(d) and np.all(counts == 1) and len(d) <= 50
        method = "exact" if exact else "asymptotic"
        w = stats.wilcoxon(a, b, zero_method="wilcox", correction=True, method=method)
        t = stats.ttest_rel(a, b)
        sd = np.std(d, ddof=1)
        out["paired"].append({
            "name": name, "a": a.tolist(), "b": b.tolist(),
            "t_statistic": float(t.statistic), "t_p": float(t.pvalue),
            "wilcoxon_method": "exact" if exact else "normal",
            "wilcoxon_statistic": float(w.statistic), "wilcoxon_p": float(w.pvalue),
            "cohens_d": float(np.mean(d) / sd),
        })

    paired_case("small exact", rng.normal(0.3, 1, 12), rng.normal(0, 1, 12))
    paired_case("exact n=50", rng.normal(0.1, 1, 50), rng.normal(0, 1, 50))
    paired_case("tiny with tied differences", [1.0, 2.5, 3.1, 0.2, 4.4], [0.5, 2.0, 3.6, 0.0, 4.0])
    base = rng.integers(0, 10, 40) / 10.0
    paired_case("accuracies with ties and zeros", base, np.clip(base + rng.integers(-2, 3, 40) / 10.0, 0, 1))
    paired_case("large normal n=600", rng.normal(0.55, 0.1, 600), rng.normal(0.53, 0.1, 600))
    paired_case("large null n=200", rng.normal(0, 1, 200), rng.normal(0, 1, 200))

    p = [0.01, 0.04, 0.03, 0.005, 0.5, 0.04]
    out["holm"] = [{"p": p, "adjusted": holm(p)},
                   {"p": [0.2, 0.9, 0.6], "adjusted": holm([0.2, 0.9, 0.6])}]

    path = os.path.join("tests", "data", "stats", "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
