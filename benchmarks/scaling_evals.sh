#!/usr/bin/env bash
# Does extra compute buy accuracy? The evaluations behind the targets of issue 8, one per line, each
# resumable (rerun the same command to continue), then the reports that read their traces.
#   bash benchmarks/scaling_evals.sh [MODEL] [OUT_ROOT] [DATA_DIR]
# Run them one after another on a small machine: each starts its own embedded server.
set -euo pipefail
MODEL=${1:-local:fast}
OUT=${2:-docs/results}
DATA=${3:-../shared/data}
OH=${OPENHEAVY:-.venv/bin/openheavy}
PY=${PYTHON:-.venv/bin/python}
# rank:N on gsm8k votes over numbers (check:numeric, the default there) with the greedy answer as sample 0
"$OH" eval gsm8k --modes direct,rank:8,rank:16 --limit 50 --model "$MODEL" --concurrency 2 \
    --data-dir "$DATA" --out "$OUT/gsm8k-50"
# program-aided: with python alone, rank:N alternates prose and program samples in one vote (the
# programs run in the sandbox; needs bubblewrap)
"$OH" eval gsm8k --modes rank:8 --tools python --limit 50 --model "$MODEL" --concurrency 2 \
    --data-dir "$DATA" --out "$OUT/gsm8k-50-python"
"$OH" eval hotpotqa --modes single,heavy:4 --limit 50 --max-steps 4 --model "$MODEL" --concurrency 2 \
    --data-dir "$DATA" --out "$OUT/hotpotqa-50"
"$OH" eval musique --modes single,heavy:4 --limit 30 --max-steps 4 --model "$MODEL" --concurrency 2 \
    --data-dir "$DATA" --out "$OUT/musique-30"
"$OH" eval peps-wide --modes single,heavy:4 --max-steps 6 --model "$MODEL" --concurrency 2 \
    --data-dir "$DATA" --out "$OUT/peps-wide-15"
"$PY" benchmarks/rank_headroom.py "$OUT/gsm8k-50"
"$PY" benchmarks/rank_headroom.py "$OUT/gsm8k-50-python"
"$PY" benchmarks/heavy_report.py "$OUT/hotpotqa-50" --json "$OUT/hotpotqa-50/heavy_report.json"
"$PY" benchmarks/heavy_report.py "$OUT/musique-30" --json "$OUT/musique-30/heavy_report.json"
"$PY" benchmarks/heavy_report.py "$OUT/peps-wide-15" --groups "$DATA/peps/wide_dev.jsonl" \
    --group-field created_from --json "$OUT/peps-wide-15/heavy_report.json"
