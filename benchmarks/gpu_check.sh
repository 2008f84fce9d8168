#!/usr/bin/env bash
# One command for a fresh H100 / H200 machine (CUDA, torch, nvcc, no network), from the repository root:
#   bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
# facts -> install -> (pytest -m gpu  while  the W1 bundle exports) -> bench_gpu.py --quick -> the table:
# each target PASS / FAIL with its number, each phase's time. At most ~6 minutes in all: every phase has
# its own time limit and the benchmark gets what is left. A failing phase is reported, not fatal; the
# exit status is non-zero only when the script itself is broken (no result JSON at all).
# Writes under $OUT (default ./gpu-check-out): gpu.json (copied to benchmarks/results/gpu.json on a GPU),
# gpu.png (with matplotlib), install.log, export.log, pytest.log, bench.log.
#   --cpu   the same script end to end on a tiny model on the CPU (fp32; targets read "n/a on CPU");
#           nothing is installed: it uses the current environment. The slow tests run it.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[[ "${1:-}" == "--cpu" ]] && MODE=cpu
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu-check-out}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
TOTAL_S=${GPU_CHECK_TOTAL_S:-$([[ $MODE == gpu ]] && echo 350 || echo 900)}
mkdir -p "$OUT" "$WORK"
PHASES=$WORK/phases.tsv
: > "$PHASES"
export PYTHONUNBUFFERED=1
SECONDS=0

phase() {   # phase NAME SECONDS_TAKEN OUTCOME
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$PHASES"
    echo "=== $1: $3 ($2 s)"
}

left() { echo $(( TOTAL_S - SECONDS )); }

# ---- facts ------------------------------------------------------------------------------------
echo "=== gpu_check.sh ($MODE) at $(date -u +%FT%TZ) in $PWD; results in $OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
command -v nvcc >/dev/null && nvcc --version | tail -2
$PY -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| gpu', torch.cuda.is_available() and torch.cuda.get_device_name())" \
    || echo "torch: does not import"

# ---- install ----------------------------------------------------------------------------------
start=$SECONDS
if [[ $MODE == cpu ]]; then
    how="skipped (--cpu uses this environment)"
else
    export EDGE_CAPTION_CUDA_ARCHS=${EDGE_CAPTION_CUDA_ARCHS:-90}    # one architecture: nvcc is faster
    if timeout 180 $PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1; then
        how="pip install -e ."
    else
        # the fallback: build the extensions in place and import the package from the source tree
        echo "--- pip install -e . failed (see install.log); building in place" | tee -a "$OUT/install.log"
        timeout 150 $PY setup.py build_ext --inplace >> "$OUT/install.log" 2>&1
        [[ -e edge_caption/export ]] || ln -s ../export edge_caption/export
        export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
        how="setup.py build_ext --inplace + PYTHONPATH (pip install -e . failed)"
    fi
fi
if $PY -c "import edge_caption, edge_caption.export" >> "$OUT/install.log" 2>&1; then
    phase install $((SECONDS - start)) "$how"
else
    phase install $((SECONDS - start)) "$how; edge_caption does NOT import (see install.log)"
fi

# ---- export (in the background) while pytest -m gpu runs ------------------------------------------
cpu_flag=()
[[ $MODE == cpu ]] && cpu_flag=(--cpu)
export_s=$([[ $MODE == gpu ]] && echo 200 || echo 400)     # W1 took 123 s on an H200's host
start_export=$SECONDS
timeout $(( export_s + 20 )) $PY benchmarks/bench_gpu.py --export-only --work "$WORK/bench" \
    --budget-s "$export_s" "${cpu_flag[@]}" > "$OUT/export.log" 2>&1 &
export_pid=$!

start=$SECONDS
mapfile -t gpu_tests < <(grep -l "pytest.mark.gpu" tests/test_*.py tests/export/test_*.py 2>/dev/null)
PYTEST_S=${GPU_CHECK_PYTEST_S:-150}
timeout $PYTEST_S $PY -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors "${gpu_tests[@]}" > "$OUT/pytest.log" 2>&1
code=$?
summary=$(grep -E "passed|failed|skipped|error|no tests ran" "$OUT/pytest.log" | tail -1)
[[ $code == 124 ]] && summary="timed out after $PYTEST_S s; ${summary}"
phase pytest $((SECONDS - start)) "exit $code: ${summary:-no summary} (${#gpu_tests[@]} files)"

wait $export_pid
code=$?
if [[ $code == 0 ]]; then
    outcome="exported $(du -sh "$WORK"/bench/*.ecap 2>/dev/null | cut -f1 | head -1)"
else
    outcome="FAILED (exit $code; see export.log)"
fi
phase export $((SECONDS - start_export)) "$outcome (in parallel with pytest)"

# ---- the benchmark: what time is left -------------------------------------------------------------
start=$SECONDS
budget=$(( $(left) - 15 ))
(( budget < 60 )) && budget=60
timeout $(( budget + 45 )) $PY benchmarks/bench_gpu.py --quick --no-export --work "$WORK/bench" \
    --budget-s "$budget" "${cpu_flag[@]}" --out "$OUT/gpu.json" > "$OUT/bench.log" 2>&1
code=$?
phase bench $((SECONDS - start)) "exit $code (budget $budget s)"
for log in "$OUT"/*.log; do      # what comes back is capped: keep each log's last 4 MB
    if (( $(stat -c %s "$log") > 4000000 )); then tail -c 4000000 "$log" > "$log.tmp" && mv "$log.tmp" "$log"; fi
done
phase total "$SECONDS" "$MODE run; logs and gpu.json in $OUT"

echo
$PY benchmarks/targets.py "$OUT/gpu.json" "$PHASES"
if [[ $MODE == gpu && -f "$OUT/gpu.json" ]]; then     # the JSON names the GPU, driver, CUDA and torch
    cp "$OUT/gpu.json" benchmarks/results/gpu.json
    [[ -f "$OUT/gpu.png" ]] && cp "$OUT/gpu.png" benchmarks/results/gpu.png
fi
[[ -f "$OUT/gpu.json" ]] || { echo "no gpu.json: bench_gpu.py is broken (see $OUT/bench.log)"; exit 2; }
exit 0
