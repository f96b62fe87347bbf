#!/usr/bin/env python3
"""Plots of a metatape benchmark report (needs matplotlib: pip install matplotlib).

Usage: python3 scripts/plot_report.py REPORT_DIR [--out DIR]

REPORT_DIR holds report.json as written by `metatape run|bench|eval` (and, after walk-forward
trading, equity.csv). Every method keeps one colour and one marker in all plots of a report
(learners: solid lines; baselines: dashed). Writes, per task family:
  <family>_verdicts_forest.png  each learner's paired difference against the family's strongest simple
                                baseline on the primary metric at the headline cell (point and 95% CI,
                                coloured by verdict: skill / no skill / worse; Holm p-values at the
                                right); needs report.json "verdicts"
  <family>_reliability.png      classification families: reliability (calibration) diagram at the
                                headline cell (headline_shots; each learner at its verdict steps, the
                                baselines at the learners' steps): observed frequency against mean
                                predicted probability per bin, the diagonal, and the bin counts below;
                                needs the cells' "calibration" bins
  <family>_vs_shots.png         primary metric (mean and 95% CI) against shots, at the middle steps
                                value, with the strongest simple baseline as a labelled reference line
                                (methods side by side at each x value; a log axis when the means span
                                orders of magnitude; a second panel zooming on the strongest baseline's
                                range when a method sits far outside it)
  <family>_vs_steps.png         primary metric against adaptation steps at the headline shots value,
                                drawn the same way
  <family>_equity.png           walk-forward equity curves from equity.csv, one subplot per asset: each
                                learner against buy_and_hold (black) and the baselines (lighter)
  <family>_drawdown.png         the drawdown curves of the same, in percent below the running peak
  <family>_learning.png         meta-training query loss (and accuracy) per meta-step from the JSONL
                                training logs (thin: raw, thick: moving average); validation rows
                                (a row with "split": "validation", or "validation_loss" /
                                "validation_accuracy" fields) are drawn dashed in the same colour
and once per report:
  adaptation_time.png           mean adaptation + prediction time per episode of each method, per
                                family (headline shots, middle steps)

equity.csv has the columns family,method,asset,day,daily_return,equity,drawdown (day: an ISO date,
epoch milliseconds or a day index; equity: growth of one unit of starting capital; drawdown: the
fraction below the running peak). Plots whose inputs a report lacks (older reports have no verdicts
or calibration bins, reports without walk-forward trading no equity.csv) are skipped with a note on
stderr; the exit status is 1 only when a plot that had its inputs failed to draw.
"""
import argparse
import csv
import datetime
import json
import math
import os
import sys
import traceback

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_report.py needs matplotlib: pip install matplotlib")

DPI = 120

# The same list as eval/scoring.cpp lower_is_better().
LOWER_IS_BETTER = {"log_loss", "brier", "mse", "qlike", "volatility", "max_drawdown", "trade_max_drawdown",
                   "trade_turnover"}

# Axis labels with units; metrics not listed are shown by name.
METRIC_LABELS = {
    "log_loss": "log loss (nats per query row)",
    "brier": "Brier score (per query row)",
    "accuracy": "accuracy (fraction of query rows)",
    "balanced_accuracy": "balanced accuracy (fraction)",
    "macro_f1": "macro-F1 (0 to 1)",
    "qlike": "QLIKE loss (per query row, unitless)",
    "mse": "MSE of log volatility",
    "rank_correlation": "rank correlation",
    "sharpe": "Sharpe ratio (annualised)",
    "pr_auc": "PR-AUC",
}

# Learned baselines that adapt like the learners; never the "strongest simple baseline".
LEARNED_BASELINES = {"scratch", "finetune"}
REFERENCE_STRATEGIES = {"buy_and_hold", "equal_weight"}

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173", "#3182bd",
           "#637939", "#ad494a", "#a55194", "#6b6ecf"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*", "d", "H", "8", "1", "2", "3", "4", "+"]

VERDICT_STYLE = {  # verdict -> (colour, marker, legend text)
    "skill": ("#1a9850", "o", "skill (beats the strongest baseline, Holm p < alpha)"),
    "no skill": ("#6f6f6f", "s", "no skill (no significant difference)"),
    "worse": ("#d73027", "X", "worse (significantly worse than the baseline)"),
}


def note(msg):
    print(f"plot_report: note: {msg}", file=sys.stderr)


def lower_is_better(metric):
    return metric in LOWER_IS_BETTER


def metric_label(metric):
    return METRIC_LABELS.get(metric, metric)


def better_text(metric):
    return f"lower {metric} is better" if lower_is_better(metric) else f"higher {metric} is better"


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


class Report:
    """report.json with the lookups the plots share, tolerant of keys older reports lack."""

    def __init__(self, data, report_dir):
        self.data = data
        self.dir = report_dir
        self.cfg = data.get("config", {})
        self.families = list(data.get("families", []))
        self.learners = list(data.get("methods", []))
        self.baselines = list(data.get("baselines", []))
        self.cells = data.get("cells", [])
        self.primary = data.get("primary_metric", {})
        self.verdicts = data.get("verdicts")
        self.shots = list(self.cfg.get("shots", []))
        self.steps = list(self.cfg.get("steps", []))
        self._index = {}
        for c in self.cells:
            self._index[(c.get("family"), c.get("method"), c.get("shots"), c.get("steps"))] = c
        self.styles = {}
        for m in self.learners + self.baselines:
            self.style(m)

    def style(self, method):
        """method -> dict(color, marker, linestyle): one fixed style per method for the whole report."""
        if method not in self.styles:
            i = len(self.styles)
            if method in REFERENCE_STRATEGIES:
                colour, marker = "#000000", "o"
            else:
                colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
            self.styles[method] = {"color": colour, "marker": marker,
                                   "linestyle": "-" if method in self.learners else "--"}
        return self.styles[method]

    def cell(self, family, method, shots, steps):
        return self._index.get((family, method, shots, steps))

    def metric(self, family, method, shots, steps, metric):
        c = self.cell(family, method, shots, steps)
        if c is None:
            return None
        m = c.get("metrics", {}).get(metric)
        if not m or not finite(m.get("mean")):
            return None
        mean = m["mean"]  # a CI end written as null (NaN) collapses to the mean
        return {"mean": mean, "ci_low": m["ci_low"] if finite(m.get("ci_low")) else mean,
                "ci_high": m["ci_high"] if finite(m.get("ci_high")) else mean}

    def middle_steps(self):
        return self.steps[len(self.steps) // 2] if self.steps else None

    def headline_shots(self):
        if self.cfg.get("headline_shots"):  # 0 or absent: the middle shots value (eval/benchmark.cpp)
            return self.cfg["headline_shots"]
        return self.shots[len(self.shots) // 2] if self.shots else None

    def family_verdicts(self, family):
        return [v for v in (self.verdicts or []) if v.get("family") == family]

    def strongest_baseline(self, family, shots, steps, metric):
        """The verdicts' strongest baseline of the family (the most frequent one when learners differ);
        without verdicts the best simple baseline at (shots, steps)."""
        names = [v["strongest_baseline"] for v in self.family_verdicts(family) if v.get("strongest_baseline")]
        if names:
            return max(set(names), key=lambda n: (names.count(n), -names.index(n)))
        simple = self.data.get("simple_baselines") or [
            b for b in self.baselines if b not in LEARNED_BASELINES and b not in REFERENCE_STRATEGIES]
        best, best_mean = None, None
        for b in simple:
            m = self.metric(family, b, shots, steps, metric)
            if m is None:
                continue
            if best is None or (m["mean"] < best_mean if lower_is_better(metric) else m["mean"] > best_mean):
                best, best_mean = b, m["mean"]
        return best


def save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def wide_range(values):
    """True when positive values span more than two orders of magnitude (then a log axis reads better)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return bool(v) and min(v) > 0 and max(v) / min(v) > 100


# ---------------------------------------------------------------------------------------------------
# Forest plot of the verdicts


def forest_plot(rep, family, path):
    verdicts = [v for v in rep.family_verdicts(family) if finite(v.get("difference"))]
    if not verdicts:
        return False
    metric = verdicts[0].get("metric") or rep.primary.get(family, "?")
    shots = verdicts[0].get("shots", rep.headline_shots())
    n = len(verdicts)
    fig, ax = plt.subplots(figsize=(8.5, 1.5 + 0.62 * n))
    rows = list(reversed(verdicts))  # first learner at the top
    labels = []
    lows, highs, ends = [0.0], [0.0], []
    for y, v in enumerate(rows):
        kind = v.get("verdict") or ("skill" if v.get("skill") else "no skill")
        colour, marker, _ = VERDICT_STYLE.get(kind, ("#1f77b4", "D", kind))
        d = v["difference"]
        lo = v["ci_low"] if finite(v.get("ci_low")) else d
        hi = v["ci_high"] if finite(v.get("ci_high")) else d
        lows.append(lo)
        highs.append(hi)
        ends += [abs(d), abs(lo), abs(hi)]
        ax.errorbar([d], [y], xerr=[[max(d - lo, 0.0)], [max(hi - d, 0.0)]], fmt=marker, color=colour,
                    ecolor=colour, markersize=9, capsize=4, elinewidth=2)
        steps = v.get("steps")
        on = v.get("steps_selected_on")
        how = {"validation": " (chosen on validation)", "fixed": " (fixed)", "": "", None: ""}.get(on, f" ({on})")
        labels.append(f"{v.get('learner', '?')}\nvs {v.get('strongest_baseline', '?')}, "
                      f"{plural(steps, 'step') if steps is not None else '? steps'}{how}")
        p = v.get("p_holm")
        ax.annotate(kind + (f"\np(Holm) = {p:.3g}" if p is not None else ""), xy=(1.015, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=colour,
                    fontweight="bold" if kind == "skill" else "normal")
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    nonzero = sorted(e for e in ends if e > 0)
    left, right = min(lows), max(highs)
    if nonzero and nonzero[-1] / nonzero[len(nonzero) // 2] > 100:
        lin = nonzero[len(nonzero) // 2]
        ax.set_xscale("symlog", linthresh=lin)
        ax.set_xlim(left * 2.0 if left < -lin else -lin, right * 2.0 if right > lin else lin)
        scale_note = " (symmetric log scale)"
    else:
        pad = 0.06 * (right - left) if right > left else 1.0
        ax.set_xlim(left - pad, right + pad)
        scale_note = ""
    ax.set_xlabel(f"difference in {metric_label(metric)}, learner − strongest baseline{scale_note}")
    better_left = lower_is_better(metric)
    for x, ha, text in ((0.0, "left", "← learner better" if better_left else "← learner worse"),
                        (1.0, "right", "learner worse →" if better_left else "learner better →")):
        ax.annotate(text, xy=(x, 0.0), xycoords="axes fraction", xytext=(0, -36), textcoords="offset points",
                    ha=ha, va="top", fontsize=8, color="#444444")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{family}: each learner against the strongest simple baseline\n"
                 f"{metric} at {shots}-shot, paired mean difference with 95% CI ({better_text(metric)})",
                 fontsize=10)
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------
# Reliability diagram


def reliability_plot(rep, family, path):
    shots = rep.headline_shots()
    verdicts = rep.family_verdicts(family)
    learner_steps = {v["learner"]: v["steps"] for v in verdicts if "learner" in v and "steps" in v}
    if learner_steps:
        counts = list(learner_steps.values())
        base_steps = max(set(counts), key=lambda s: (counts.count(s), -counts.index(s)))
    else:
        base_steps = rep.middle_steps()
    entries = []  # (method, steps, bins)
    for m in rep.learners:
        steps = learner_steps.get(m, base_steps)
        c = rep.cell(family, m, shots, steps)
        if c and c.get("calibration"):
            entries.append((m, steps, c["calibration"]))
    for m in rep.baselines:
        c = rep.cell(family, m, shots, base_steps)
        if c and c.get("calibration"):
            entries.append((m, base_steps, c["calibration"]))
    if not entries:
        return False
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(7.5, 7.8), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08})
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=":", label="perfect calibration")
    max_count = max((b.get("count", 0) for _, _, bins in entries for b in bins), default=1) or 1
    nbins = max(len(bins) for _, _, bins in entries)
    width = 1.0 / nbins / (len(entries) + 1)
    for i, (m, steps, bins) in enumerate(entries):
        st = rep.style(m)
        used = [b for b in bins if b.get("count", 0) > 0 and finite(b.get("mean_predicted")) and finite(b.get("observed"))]
        xs = [b["mean_predicted"] for b in used]
        ys = [b["observed"] for b in used]
        sizes = [12 + 220 * b["count"] / max_count for b in used]
        label = f"{m} ({steps} step{'s' if steps != 1 else ''})" if m in rep.learners else f"{m} (baseline)"
        ax.plot(xs, ys, color=st["color"], linestyle=st["linestyle"], linewidth=1.2, alpha=0.8)
        ax.scatter(xs, ys, s=sizes, color=st["color"], marker=st["marker"], alpha=0.75,
                   edgecolors="white", linewidths=0.5, zorder=3)
        ax.plot([], [], color=st["color"], marker=st["marker"], linestyle=st["linestyle"], label=label)
        lefts = [b.get("bin_low", k / len(bins)) + (i + 0.5) * width for k, b in enumerate(bins)]
        axh.bar(lefts, [max(b.get("count", 0), 0) for b in bins], width=width, color=st["color"],
                align="edge", alpha=0.85)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("observed frequency of the class")
    ax.grid(alpha=0.3)
    ax.set_title(f"{family}: reliability at {shots}-shot (test split, one-vs-rest over classes)\n"
                 f"marker area ∝ bin count; learners at their verdict steps, baselines at {plural(base_steps, 'step')}",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="method (adaptation steps)",
              title_fontsize=8)
    axh.set_yscale("log")
    axh.set_ylabel("predictions\nper bin (log)")
    axh.set_xlabel("predicted probability of a class (bin mean; bins of width "
                   f"{1.0 / nbins:.2g})")
    axh.grid(alpha=0.3, axis="y")
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------
# Primary metric against shots or steps


def line_plot(rep, family, axis, fixed, path):
    metric = rep.primary.get(family)
    xs = rep.shots if axis == "shots" else rep.steps
    if not metric or not xs or fixed is None:
        return False

    def at(x):
        return (x, fixed) if axis == "shots" else (fixed, x)

    series = []  # (method, [(x index, mean, ci_low, ci_high)])
    for method in rep.learners + rep.baselines:
        pts = []
        for k, x in enumerate(xs):
            m = rep.metric(family, method, *at(x), metric)
            if m is not None:
                pts.append((k, m["mean"], m.get("ci_low", m["mean"]), m.get("ci_high", m["mean"])))
        if pts:
            series.append((method, pts))
    if not series:
        return False
    # The strongest simple baseline as the reference level.
    ref_cell = (rep.headline_shots(), fixed) if axis == "steps" else (xs[len(xs) // 2], fixed)
    ref = rep.strongest_baseline(family, *ref_cell, metric)
    levels = []
    if ref is not None:
        for k, x in enumerate(xs):
            m = rep.metric(family, ref, *at(x), metric)
            if m is not None:
                levels.append((k, m["mean"]))
    all_values = [v for _, pts in series for p in pts for v in p[1:]]
    # Means over orders of magnitude (a diverged learner): a log axis, CIs cut at a floor below the
    # smallest mean (a t interval of a positive loss can reach below zero).
    log_scale = wide_range([p[1] for _, pts in series for p in pts])
    floor = min(p[1] for _, pts in series for p in pts) / 10 if log_scale else None
    # When some methods sit far from the rest, a second panel zooms on the range of the baselines'
    # intervals, where the comparisons that decide the verdicts happen.
    base_values = [v for m, pts in series if m in rep.baselines for p in pts for v in p[2:]]
    zoom = None
    if base_values and not log_scale:
        lo, hi = min(base_values), max(base_values)
        core = max(hi - lo, 1e-9)
        full = max(all_values) - min(all_values)
        if full > 3 * core:
            zoom = (lo - 0.3 * core, hi + 0.3 * core)
    if zoom:
        fig, (ax, axz) = plt.subplots(2, 1, figsize=(8.8, 7.4), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1.25], "hspace": 0.12})
        panels = [ax, axz]
    else:
        fig, ax = plt.subplots(figsize=(8.8, 4.6))
        panels = [ax]
    n = len(series)
    width = min(0.7 / n, 0.12)
    for panel in panels:
        for i, (method, pts) in enumerate(series):
            st = rep.style(method)
            off = (i - (n - 1) / 2) * width
            means = [p[1] for p in pts]
            panel.errorbar([p[0] + off for p in pts], means,
                           yerr=[[max(p[1] - (max(p[2], floor) if log_scale else p[2]), 0.0) for p in pts],
                                 [max(p[3] - p[1], 0.0) for p in pts]],
                           color=st["color"], marker=st["marker"], linestyle=st["linestyle"], linewidth=1.2,
                           markersize=6, capsize=3,
                           label=method + (" (baseline)" if method in rep.baselines else ""))
        if levels:
            vals = [v for _, v in levels]
            ref_label = f"strongest simple baseline: {ref}"
            if max(vals) - min(vals) <= 1e-12 * max(1.0, abs(max(vals))):
                panel.axhline(vals[0], color="#555555", linestyle=":", linewidth=1.6, zorder=0,
                              label=f"{ref_label} = {vals[0]:.4g}")
            else:  # the level differs per x value: one horizontal segment across each group
                for j, (k, v) in enumerate(levels):
                    panel.hlines(v, k - 0.45, k + 0.45, color="#555555", linestyle=":", linewidth=1.6, zorder=0,
                                 label=f"{ref_label} (its level at each {axis[:-1]} value)" if j == 0 else None)
        if log_scale:
            panel.set_yscale("log")
            panel.set_ylim(bottom=floor)
        panel.grid(alpha=0.3)
        panel.set_ylabel(metric_label(metric) + ("\n(log scale)" if log_scale else ""))
    if zoom:
        axz.set_ylim(*zoom)
        axz.set_title("zoom on the baselines' range (points outside it are cut off; see the panel above)",
                      fontsize=9)
    bottom = panels[-1]
    bottom.set_xticks(range(len(xs)))
    bottom.set_xticklabels([str(x) for x in xs])
    bottom.set_xlim(-0.6, len(xs) - 0.4)
    if axis == "shots":
        bottom.set_xlabel("shots (support examples per class or support rows)")
        cell_text = plural(fixed, "adaptation step")
    else:
        bottom.set_xlabel("adaptation steps (inner-loop gradient steps on the support set)")
        cell_text = f"{fixed}-shot"
    ax.set_title(f"{family}: {metric} against {axis} at {cell_text} (test mean, 95% CI; {better_text(metric)})",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------
# Walk-forward equity and drawdown from equity.csv


def parse_day(text):
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        try:
            return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            return datetime.datetime.strptime(s[:10], "%Y-%m-%d")
    if v > 1e11:
        return datetime.datetime.fromtimestamp(v / 1000.0, tz=datetime.timezone.utc)
    if v > 1e8:
        return datetime.datetime.fromtimestamp(v, tz=datetime.timezone.utc)
    return v


def read_equity(path):
    """equity.csv -> {family: {asset: {method: (days, equity, drawdown)}}}, rows in day order."""
    required = ["family", "method", "asset", "day", "daily_return", "equity", "drawdown"]
    curves = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(required)}")
        for line, row in enumerate(reader, start=2):
            try:
                day = parse_day(row["day"])
                eq, dd = float(row["equity"]), float(row["drawdown"])
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{line}: cannot read day/equity/drawdown ({e})") from None
            c = curves.setdefault(row["family"], {}).setdefault(row["asset"], {}).setdefault(row["method"], [])
            c.append((day, eq, dd))
    out = {}
    for fam, assets in curves.items():
        for asset, methods in assets.items():
            for method, rows in methods.items():
                rows.sort(key=lambda r: r[0])
                out.setdefault(fam, {}).setdefault(asset, {})[method] = (
                    [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    return out


def equity_plot(rep, family, assets, kind, path):
    names = sorted(assets)
    n = len(names)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.0 * ncols, 3.3 * nrows + 0.8), squeeze=False,
                             constrained_layout=True)
    handles = {}
    dated = False
    for i, asset in enumerate(names):
        ax = axes[i // ncols][i % ncols]
        methods = assets[asset]
        # Baselines first (lighter, below), then buy-and-hold, then the learners on top.
        rank = {m: k for k, m in enumerate(rep.styles)}
        order = sorted(methods, key=lambda m: (2 if m in rep.learners else 1 if m in REFERENCE_STRATEGIES else 0,
                                               rank.get(m, len(rank))))
        for m in order:
            days, eq, dd = methods[m]
            st = rep.style(m)
            ys = eq if kind == "equity" else [-100.0 * abs(d) for d in dd]
            if m in REFERENCE_STRATEGIES:
                kw = dict(color="black", linewidth=2.0, alpha=0.9, linestyle="-")
            elif m in rep.learners:
                kw = dict(color=st["color"], linewidth=1.5, alpha=1.0, linestyle="-")
            else:
                kw = dict(color=st["color"], linewidth=1.0, alpha=0.45, linestyle="--")
            (h,) = ax.plot(days, ys, label=m, **kw)
            if m not in handles:
                handles[m] = h
            dated = dated or isinstance(days[0], datetime.datetime)
        if kind == "equity":
            ax.axhline(1.0, color="#999999", linewidth=0.8, zorder=0)
            ax.set_ylabel("equity (× starting capital)")
        else:
            ax.set_ylabel("drawdown below peak (%)")
        ax.set_title(asset, fontsize=9)
        ax.grid(alpha=0.3)
        if isinstance(methods[next(iter(methods))][0][0], datetime.datetime):
            loc = mdates.AutoDateLocator(maxticks=6)
            ax.xaxis.set_major_locator(loc)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
            ax.set_xlabel("day (UTC)")
        else:
            ax.set_xlabel("trading day of the test split")
    spare = [axes[j // ncols][j % ncols] for j in range(n, nrows * ncols)]
    for ax in spare:
        ax.set_visible(False)
    what = "equity curves" if kind == "equity" else "drawdown"
    fig.suptitle(f"{family}: walk-forward {what} on the test split, per asset, after fees and slippage\n"
                 "learners (solid) against buy_and_hold (black) and the baselines (light, dashed)",
                 fontsize=10)
    legend_order = [m for m in rep.styles if m in handles]
    legend = ([handles[m] for m in legend_order], legend_order)
    if spare:  # the empty subplot slot holds the legend
        spare[0].set_visible(True)
        spare[0].axis("off")
        spare[0].legend(*legend, loc="center", fontsize=9, title="method", title_fontsize=9,
                        ncol=2 if len(legend_order) > 6 else 1)
    else:
        axes[0][ncols - 1].legend(*legend, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                                  title="method", title_fontsize=8)
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------
# Meta-training curves


def resolve_log(rep, log):
    """A training log path as written (absolute, or relative to the working directory), else the same
    trailing components under the report directory's parent or the report directory (a moved run)."""
    if os.path.exists(log):
        return log
    parts = os.path.normpath(log).replace("\\", "/").split("/")
    parts = [p for p in parts if p not in ("", ".")]
    for base in (os.path.join(rep.dir, ".."), rep.dir):
        for k in range(len(parts) - 1):
            cand = os.path.join(base, *parts[k:])
            if os.path.exists(cand):
                return cand
    return None


def read_log(path):
    """-> (train, validation): each {"step": [], "loss": [], "accuracy": []}."""
    train = {"step": [], "loss": [], "accuracy": []}
    val = {"step": [], "loss": [], "accuracy": []}

    def add(d, step, loss, acc):
        d["step"].append(step)
        d["loss"].append(loss)
        d["accuracy"].append(acc)

    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run
            if not isinstance(row, dict) or row.get("diagnostics") or "step" not in row:
                continue
            if row.get("split") == "validation":
                loss = row.get("validation_loss", row.get("query_loss", row.get("loss")))
                # Checkpoint selection rows (eval/training.h) carry the family's primary metric; log
                # loss shares the classification query loss's axis, other metrics have other units.
                if loss is None and row.get("validation_metric") == "log_loss":
                    loss = row.get("validation_value")
                if loss is not None:
                    add(val, row["step"], loss, row.get("validation_accuracy", row.get("accuracy")))
                continue
            if "query_loss" in row:
                add(train, row["step"], row["query_loss"], row.get("accuracy"))
            if "validation_loss" in row:
                add(val, row["step"], row["validation_loss"], row.get("validation_accuracy"))
    return train, val


def moving_average(values, window):
    if window <= 1:
        return values
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def learning_curves(rep, family, path):
    runs = []
    for t in rep.data.get("training", []):
        if t.get("family") != family or not t.get("log"):
            continue
        log = resolve_log(rep, t["log"])
        if log is None:
            note(f"{family}: training log {t['log']} of {t.get('learner')} not found (looked also under {rep.dir})")
            continue
        train, val = read_log(log)
        if train["step"] or val["step"]:
            runs.append((t.get("learner", "?"), t.get("run", 0), train, val))
    if not runs:
        return False
    has_acc = any(a is not None for _, _, tr, va in runs for a in tr["accuracy"] + va["accuracy"])
    has_val = any(va["step"] for *_, va in runs)
    ncols = 2 if has_acc else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.2 * ncols, 4.2), squeeze=False)
    axes = axes[0]
    labelled = set()
    losses = []
    smoothed = False
    for learner, run, train, val in runs:
        st = rep.style(learner)
        first = learner not in labelled
        labelled.add(learner)
        for panel, key in enumerate(["loss", "accuracy"][:ncols]):
            ax = axes[panel]
            steps = [s for s, v in zip(train["step"], train[key]) if v is not None]
            vals = [v for v in train[key] if v is not None]
            if vals:
                window = len(vals) // 25
                if window >= 3:
                    smoothed = True
                    ax.plot(steps, vals, color=st["color"], linewidth=0.6, alpha=0.3)
                    ax.plot(steps, moving_average(vals, window), color=st["color"], linewidth=1.6,
                            label=f"{learner} (moving average of {window})" if first and panel == 0 else None)
                else:
                    ax.plot(steps, vals, color=st["color"], linewidth=1.3, label=learner if first and panel == 0 else None)
                if key == "loss":
                    losses += vals
            vsteps = [s for s, v in zip(val["step"], val[key]) if v is not None]
            vvals = [v for v in val[key] if v is not None]
            if vvals:
                ax.plot(vsteps, vvals, color=st["color"], linestyle="--", linewidth=1.6, marker=st["marker"],
                        markersize=4, label=f"{learner} validation" if first and panel == 0 else None)
                if key == "loss":
                    losses += vvals
    if wide_range(losses):
        axes[0].set_yscale("log")
    axes[0].set_ylabel("query loss of the meta-objective" + (" (log scale)" if wide_range(losses) else ""))
    for ax in axes:
        ax.set_xlabel("meta-step")
        ax.grid(alpha=0.3)
    if has_acc:
        axes[1].set_ylabel("query accuracy (fraction)")
    steps_total = max((max(tr["step"] + va["step"]) for *_, tr, va in runs), default=0)
    fig.suptitle(f"{family}: meta-training curves over {steps_total} meta-steps" + (" (thin: per step)" if smoothed else "")
                 + ("; dashed: validation split" if has_val else "; no validation rows in the logs"),
                 fontsize=10)
    axes[-1].legend(*axes[0].get_legend_handles_labels(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.tight_layout()
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------
# Adaptation time


def adaptation_time(rep, path):
    shots, steps = rep.headline_shots(), rep.middle_steps()
    methods = [m for m in rep.learners + rep.baselines
               if any((rep.cell(f, m, shots, steps) or {}).get("adapt_ms") is not None for f in rep.families)]
    if not methods or not rep.families:
        return False
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(methods) + 3), 4.2))
    width = 0.8 / max(1, len(rep.families))
    cmap = plt.get_cmap("tab10")
    for i, family in enumerate(rep.families):
        pos, values = [], []
        for j, m in enumerate(methods):
            c = rep.cell(family, m, shots, steps)
            if c is not None and c.get("adapt_ms") is not None:
                pos.append(j + i * width)
                values.append(c["adapt_ms"])
        ax.bar(pos, values, width, label=family, color=cmap(i % 10))
    ax.set_xticks([j + width * (len(rep.families) - 1) / 2 for j in range(len(methods))])
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("adaptation + prediction time (ms per episode)")
    ax.set_xlabel("method")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(f"mean adaptation + prediction time per test episode ({shots}-shot, {plural(steps, 'step')})",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title="family", title_fontsize=8)
    save(fig, path)
    return True


# ---------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report_dir")
    parser.add_argument("--out", default=None, help="where to write the PNGs (default: REPORT_DIR)")
    args = parser.parse_args()
    path = os.path.join(args.report_dir, "report.json")
    if not os.path.exists(path):
        sys.exit(f"plot_report: no report.json in {args.report_dir}; run `metatape run --out DIR` first "
                 "and pass DIR/report")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        sys.exit(f"plot_report: {path} is not valid JSON ({e}); rerun `metatape run` to rewrite it")
    if not isinstance(data, dict):
        sys.exit(f"plot_report: {path} is not a metatape report (expected a JSON object)")
    rep = Report(data, args.report_dir)
    out = args.out or args.report_dir
    os.makedirs(out, exist_ok=True)

    equity = {}
    equity_path = os.path.join(args.report_dir, "equity.csv")
    if os.path.exists(equity_path):
        try:
            equity = read_equity(equity_path)
        except (OSError, ValueError) as e:
            note(f"equity and drawdown plots skipped: {e}")
        for fam in equity:
            for assets in equity[fam].values():
                for m in assets:
                    rep.style(m)
    else:
        note(f"no equity.csv in {args.report_dir} (no walk-forward trading in this report): "
             "equity and drawdown plots skipped")

    written, failed = [], []

    def attempt(name, fn, *fargs, missing=None):
        p = os.path.join(out, name)
        try:
            if fn(*fargs, p):
                written.append(p)
            elif missing:
                note(f"{name} skipped: {missing}")
        except Exception:  # one broken plot must not cost the others; reported and counted
            failed.append(name)
            print(f"plot_report: error: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)

    if rep.verdicts is None:
        note("report.json has no \"verdicts\" (a report from before the verdict table): forest plots skipped")
    for family in rep.families:
        if rep.verdicts is not None:
            attempt(f"{family}_verdicts_forest.png", forest_plot, rep, family,
                    missing=f"no verdict for {family} in report.json")
        fam_cells = [c for c in rep.cells if c.get("family") == family]
        if any(c.get("calibration") for c in fam_cells):
            attempt(f"{family}_reliability.png", reliability_plot, rep, family,
                    missing=f"no calibration bins at the headline cell of {family}")
        elif any("log_loss" in c.get("metrics", {}) for c in fam_cells):
            note(f"{family}: no calibration bins in report.json (an older report): reliability diagram skipped")
        if family not in rep.primary:
            note(f"{family}: report.json names no primary metric: vs_shots and vs_steps plots skipped")
        else:
            attempt(f"{family}_vs_shots.png", line_plot, rep, family, "shots", rep.middle_steps(),
                    missing=f"no {rep.primary[family]} values for {family}")
            attempt(f"{family}_vs_steps.png", line_plot, rep, family, "steps", rep.headline_shots(),
                    missing=f"no {rep.primary[family]} values for {family}")
        if family in equity:
            attempt(f"{family}_equity.png", equity_plot, rep, family, equity[family], "equity")
            attempt(f"{family}_drawdown.png", equity_plot, rep, family, equity[family], "drawdown")
        attempt(f"{family}_learning.png", learning_curves, rep, family,
                missing=f"no readable meta-training log for {family}")
    for family in equity:
        if family not in rep.families:
            note(f"equity.csv has family {family}, which report.json does not list; plotted anyway")
            attempt(f"{family}_equity.png", equity_plot, rep, family, equity[family], "equity")
            attempt(f"{family}_drawdown.png", equity_plot, rep, family, equity[family], "drawdown")
    attempt("adaptation_time.png", adaptation_time, rep, missing="no cell carries adapt_ms")
    for p in written:
        print(p)
    if failed:
        sys.exit(f"plot_report: {len(failed)} plot(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
