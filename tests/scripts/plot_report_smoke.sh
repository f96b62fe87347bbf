#!/usr/bin/env bash
# Smoke test of scripts/plot_report.py on the small report in tests/data/plot_report (see its
# make_fixture.py): every expected PNG is written and is a PNG; a report without the newer keys
# (verdicts, calibration bins, headline_shots, training logs) and without equity.csv still plots
# what it can and says what it skipped; a broken equity.csv is named and skipped; a directory
# without report.json is refused with a message.
# Usage: plot_report_smoke.sh [PYTHON]   (default: $PYTHON, else python3). Exits 77 (skipped) when
# matplotlib cannot be imported.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-${PYTHON:-python3}}"
script="$root/scripts/plot_report.py"
fixture="$root/tests/data/plot_report"

if ! "$py" -c "import matplotlib" >/dev/null 2>&1; then
  echo "plot_report_smoke: matplotlib is not importable by $py (pip install matplotlib); skipped"
  exit 77
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

is_png() {  # the 8-byte PNG signature
  [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]
}

expect_pngs() {  # DIR NAME...: each exists and is a PNG
  local dir="$1"; shift
  for name in "$@"; do
    if [ ! -e "$dir/$name" ]; then fail "$name not written in $dir"
    elif ! is_png "$dir/$name"; then fail "$name in $dir is not a PNG"; fi
  done
}

expect_absent() {
  local dir="$1"; shift
  for name in "$@"; do
    [ -e "$dir/$name" ] && fail "$name written in $dir though its inputs are missing"
  done
}

# 1. The full fixture: every plot.
out="$tmp/full"
if ! "$py" "$script" "$fixture" --out "$out" >"$tmp/full.stdout" 2>"$tmp/full.stderr"; then
  fail "plot_report.py failed on the fixture:"; cat "$tmp/full.stderr"
fi
full=(price_direction_verdicts_forest.png price_direction_reliability.png price_direction_vs_shots.png
      price_direction_vs_steps.png price_direction_equity.png price_direction_drawdown.png
      price_direction_learning.png risk_verdicts_forest.png risk_vs_shots.png risk_vs_steps.png
      risk_learning.png adaptation_time.png)
expect_pngs "$out" "${full[@]}"
# risk is a regression family: no reliability diagram; equity.csv has no risk rows.
expect_absent "$out" risk_reliability.png risk_equity.png risk_drawdown.png
written="$(ls "$out" | sort | tr '\n' ' ')"
wanted="$(printf '%s\n' "${full[@]}" | sort | tr '\n' ' ')"
[ "$written" = "$wanted" ] || fail "files written: $written; expected: $wanted"
# The training logs are recorded under a directory that does not exist: the script must have found
# them next to the report (no "not found" note).
grep -q "not found" "$tmp/full.stderr" && fail "training logs not found next to the report: $(cat "$tmp/full.stderr")"

# 2. An older report: no verdicts, calibration bins, pooled metrics, episodes, headline_shots or
#    training logs, and no equity.csv.
old="$tmp/old"
mkdir -p "$old"
"$py" - "$fixture/report.json" "$old/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("verdicts", "episodes", "training"):
    r.pop(k, None)
r["config"].pop("headline_shots", None)
for c in r["cells"]:
    c.pop("calibration", None)
    c.pop("pooled", None)
json.dump(r, open(sys.argv[2], "w"))
EOF
if ! "$py" "$script" "$old" --out "$old/png" >"$tmp/old.stdout" 2>"$tmp/old.stderr"; then
  fail "plot_report.py failed on a report without the newer keys:"; cat "$tmp/old.stderr"
fi
expect_pngs "$old/png" price_direction_vs_shots.png price_direction_vs_steps.png risk_vs_shots.png \
  risk_vs_steps.png adaptation_time.png
expect_absent "$old/png" price_direction_verdicts_forest.png price_direction_reliability.png \
  price_direction_equity.png price_direction_drawdown.png price_direction_learning.png
for msg in 'no "verdicts"' "no calibration bins" "no equity.csv"; do
  grep -q "$msg" "$tmp/old.stderr" || fail "no note \"$msg\" for the older report; stderr: $(cat "$tmp/old.stderr")"
done

# 3. A broken equity.csv (a column missing): named, the equity plots skipped, the rest drawn (on the
#    older report of step 2, which has fewer plots to draw).
bad="$tmp/bad"
mkdir -p "$bad"
cp "$old/report.json" "$bad/"
cut -d, -f1-6 "$fixture/equity.csv" >"$bad/equity.csv"
if ! "$py" "$script" "$bad" --out "$bad/png" >/dev/null 2>"$tmp/bad.stderr"; then
  fail "plot_report.py failed on a broken equity.csv:"; cat "$tmp/bad.stderr"
fi
grep -q "missing column(s) drawdown" "$tmp/bad.stderr" || fail "the missing drawdown column is not named: $(cat "$tmp/bad.stderr")"
expect_absent "$bad/png" price_direction_equity.png price_direction_drawdown.png
expect_pngs "$bad/png" price_direction_vs_shots.png adaptation_time.png

# 4. No report.json: refused with a message naming the fix.
if "$py" "$script" "$tmp/nothing-here" >/dev/null 2>"$tmp/none.stderr"; then
  fail "plot_report.py accepted a directory without report.json"
fi
grep -q "no report.json" "$tmp/none.stderr" || fail "no clear message without report.json: $(cat "$tmp/none.stderr")"

if [ "$failures" -ne 0 ]; then
  echo "plot_report_smoke: $failures failure(s)"
  exit 1
fi
echo "plot_report_smoke: ok"
