#!/usr/bin/env python3
"""Rebuilds this fixture from a `metatape run` output directory (documentation; not run by the tests).

  metatape run -c configs/main.yaml -o RUN --episodes 6 --meta-steps 30 \
      --learners maml protonet --families price_direction risk --no-progress -q
  python3 tests/data/plot_report/make_fixture.py RUN tests/data/plot_report

Shrinks RUN/report/report.json (keeps the primary metric, accuracy and trade_sharpe of each cell
without per-episode values, 4 episodes and the comparisons of the verdicts' cells; rounds numbers to
5 significant digits), copies the JSONL training logs without their diagnostics lines but one,
records the logs under a directory that does not exist (so plot_report.py has to find them next to
the report, as after moving a run), adds validation rows to two logs in the two forms the script
reads (a row with "split": "validation", and "validation_loss"/"validation_accuracy" fields), and
writes a constructed equity.csv (2 assets, 12 days, price_direction).
"""
import csv
import datetime
import json
import math
import os
import sys

run, out = sys.argv[1], sys.argv[2]
with open(os.path.join(run, "report", "report.json")) as f:
    r = json.load(f)
for c in r["cells"]:
    primary = r["primary_metric"][c["family"]]
    c["metrics"] = {k: m for k, m in c["metrics"].items() if k in (primary, "accuracy", "trade_sharpe")}
    for m in c["metrics"].values():
        m.pop("values", None)
r["episodes"] = r["episodes"][:4]
keep = {(v["family"], v["learner"], v["shots"], v["steps"]) for v in r["verdicts"]}
r["comparisons"] = [c for c in r["comparisons"] if (c["family"], c["learner"], c["shots"], c["steps"]) in keep]
for t in r["training"]:
    rel = os.path.relpath(t["log"], run)
    src = t["log"]
    t["log"] = "/nonexistent/moved-run/" + rel
    dst = os.path.join(out, rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    rows, diag = [], 0
    with open(src) as f:
        for line in f:
            row = json.loads(line)
            if row.get("diagnostics"):
                diag += 1
                if diag > 1:
                    continue
                row = {k: row[k] for k in ("diagnostics", "step", "vanishing", "exploding")}
            else:
                row = {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}
            rows.append(row)
    if t["family"] == "price_direction" and t["learner"] == "maml":
        for s in (10, 20, 30):
            rows.append({"split": "validation", "step": s, "query_loss": round(1.15 - 0.002 * s, 6),
                         "accuracy": round(0.33 + 0.001 * s, 6)})
    if t["family"] == "price_direction" and t["learner"] == "protonet":
        for row in rows:
            if not row.get("diagnostics") and row["step"] % 10 == 0:
                row["validation_loss"] = round(row["query_loss"] * 1.05, 6)
                row["validation_accuracy"] = round(row.get("accuracy", 0.3) * 0.95, 6)
    with open(dst, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def rounded(x):
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(rounded(r), f, sort_keys=True)
    f.write("\n")
with open(os.path.join(out, "equity.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["family", "method", "asset", "day", "daily_return", "equity", "drawdown"])
    for a, asset in enumerate(["SIM0/USD@simx0", "SIM1/USD@simx1"]):
        for k, method in enumerate(["maml", "protonet", "buy_and_hold", "zero_skill"]):
            eq, peak = 1.0, 1.0
            for d in range(12):
                ret = 0.01 * math.sin(0.9 * d + k + 2 * a) - 0.002 * k
                eq *= 1 + ret
                peak = max(peak, eq)
                day = (datetime.date(2020, 5, 1) + datetime.timedelta(days=d)).isoformat()
                w.writerow(["price_direction", method, asset, day, f"{ret:.6f}", f"{eq:.6f}", f"{1 - eq / peak:.6f}"])
