#!/usr/bin/env python3
"""Plots of a metatape benchmark report (needs matplotlib: pip install matplotlib).

Usage: python3 scripts/plot_report.py REPORT_DIR [--out DIR]

REPORT_DIR holds report.json as written by `metatape run|bench|eval`. Writes, per task family:
  <family>_vs_shots.png   primary metric (mean and 95% CI) against shots, at the middle steps value
  <family>_vs_steps.png   primary metric against adaptation steps, at the middle shots value
  <family>_learning.png   meta-training query loss (and accuracy) per step from the JSONL logs
  adaptation_time.png     mean adaptation time per episode of each method, per family
"""
import argparse
import json
import os
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_report.py needs matplotlib: pip install matplotlib")


def cell(cells, family, method, shots, steps):
    for c in cells:
        if c["family"] == family and c["method"] == method and c["shots"] == shots and c["steps"] == steps:
            return c
    return None


def line_plot(report, family, axis, fixed, path):
    cfg = report["config"]
    metric = report["primary_metric"][family]
    xs = cfg[axis]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method in report["methods"] + report["baselines"]:
        means, lows, highs, used = [], [], [], []
        for x in xs:
            shots, steps = (x, fixed) if axis == "shots" else (fixed, x)
            c = cell(report["cells"], family, method, shots, steps)
            if c is None or metric not in c["metrics"]:
                continue
            m = c["metrics"][metric]
            used.append(x)
            means.append(m["mean"])
            lows.append(m["mean"] - m["ci_low"])
            highs.append(m["ci_high"] - m["mean"])
        if not used:
            continue
        style = "--" if method in report["baselines"] else "-"
        ax.errorbar(used, means, yerr=[lows, highs], fmt="o" + style, capsize=3, label=method)
    other = "steps" if axis == "shots" else "shots"
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    ax.set_title(f"{family}: {metric} vs {axis} ({other} = {fixed}; 95% CI)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curves(report, family, path, report_dir):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    drew = False
    for t in report["training"]:
        if t["family"] != family or not t["log"]:
            continue
        log = t["log"] if os.path.isabs(t["log"]) else os.path.join(report_dir, "..", "..", t["log"])
        if not os.path.exists(log):
            log = t["log"]
        if not os.path.exists(log):
            continue
        steps, loss, acc = [], [], []
        with open(log) as f:
            for line in f:
                row = json.loads(line)
                if row.get("diagnostics"):
                    continue
                steps.append(row["step"])
                loss.append(row["query_loss"])
                acc.append(row.get("accuracy"))
        if not steps:
            continue
        drew = True
        ax1.plot(steps, loss, label=t["learner"], linewidth=0.8)
        if all(a is not None for a in acc):
            ax2.plot(steps, acc, label=t["learner"], linewidth=0.8)
    if not drew:
        plt.close(fig)
        return False
    ax1.set_xlabel("meta-step")
    ax1.set_ylabel("query loss")
    ax2.set_xlabel("meta-step")
    ax2.set_ylabel("query accuracy")
    ax1.set_title(f"{family}: meta-training")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def adaptation_time(report, path):
    cfg = report["config"]
    shots = cfg["shots"][len(cfg["shots"]) // 2]
    steps = cfg["steps"][len(cfg["steps"]) // 2]
    families = report["families"]
    methods = [m for m in report["methods"] + report["baselines"]
               if any(cell(report["cells"], f, m, shots, steps) for f in families)]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(families))
    for i, family in enumerate(families):
        values = []
        for m in methods:
            c = cell(report["cells"], family, m, shots, steps)
            values.append(c["adapt_ms"] if c else 0.0)
        ax.bar([j + i * width for j in range(len(methods))], values, width, label=family)
    ax.set_xticks([j + width * (len(families) - 1) / 2 for j in range(len(methods))])
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("ms per episode")
    ax.set_title(f"adaptation + prediction time ({shots}-shot, {steps} steps)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report_dir")
    parser.add_argument("--out", default=None, help="where to write the PNGs (default: REPORT_DIR)")
    args = parser.parse_args()
    path = os.path.join(args.report_dir, "report.json")
    if not os.path.exists(path):
        sys.exit(f"no report.json in {args.report_dir}; run `metatape run --out DIR` first")
    with open(path) as f:
        report = json.load(f)
    out = args.out or args.report_dir
    os.makedirs(out, exist_ok=True)
    cfg = report["config"]
    written = []
    for family in report["families"]:
        p = os.path.join(out, f"{family}_vs_shots.png")
        line_plot(report, family, "shots", cfg["steps"][len(cfg["steps"]) // 2], p)
        written.append(p)
        p = os.path.join(out, f"{family}_vs_steps.png")
        line_plot(report, family, "steps", cfg["shots"][len(cfg["shots"]) // 2], p)
        written.append(p)
        p = os.path.join(out, f"{family}_learning.png")
        if learning_curves(report, family, p, args.report_dir):
            written.append(p)
    p = os.path.join(out, "adaptation_time.png")
    adaptation_time(report, p)
    written.append(p)
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
