#!/usr/bin/env bash
# The published evaluation grid (docs/results.md). Resumable: rerun the same command to continue.
#   bash benchmarks/run_evals.sh [MODEL] [OUT_ROOT]
# Each dataset runs in its own process with its own embedded server; run them one after another on a
# small machine (they share the CPU otherwise, and wall times grow accordingly).
set -euo pipefail
MODEL=${1:-local:fast}
OUT=${2:-docs/results}
OH=${OPENHEAVY:-.venv/bin/openheavy}
"$OH" eval gsm8k --modes direct,rank:1,rank:5 --verifier check:numeric --limit 30 --model "$MODEL" \
    --concurrency 2 --out "$OUT/gsm8k"
"$OH" eval hotpotqa --modes direct,single,heavy:4,rank:5 --limit 30 --max-steps 4 --model "$MODEL" \
    --concurrency 2 --out "$OUT/hotpotqa"
"$OH" eval peps-wide --modes direct,single,heavy:4,rank:5 --max-steps 6 --model "$MODEL" \
    --concurrency 2 --out "$OUT/peps-wide"
