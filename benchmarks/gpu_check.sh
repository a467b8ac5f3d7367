#!/usr/bin/env bash
# One prepared GPU check of dmlp-plugin, sized for 10 minutes on one H100; prints one summary.
#
#   benchmarks/gpu_check.sh --prepare     # here, with ../shared: fill $DMLP_GPU_DATA (default .gpu-data/)
#   benchmarks/gpu_check.sh               # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run     # on a CPU: every stage tiny, same summary
#
# Stages, in order (each under a time limit, all under $DMLP_GPU_BUDGET seconds, default 560):
#   setup      install the package (pip -e, offline) if it is not importable; build CIFAR-10
#   cuda-tests python -m pytest -m cuda tests
#   speed      paper mode, paper mode in bfloat16 and the default against the naive official loop
#   features   resnet18-cifar feature-extraction throughput, float32 and autocast
#   table4     Co-teaching at symmetric 80%, with and without --dmlp, side by side for about 3 minutes
#              (dmlp reproduce table4 --epochs/--time-limit; --dry-run: --smoke on the CPU)
#   pretrain   a short SimCLR run (dmlp pretrain; the checkpoint is written every epoch)
#   simclr     its features (dmlp features), then dmlp purify in paper mode and in the default
# The summary goes to stdout and, when $OUT is set, to $OUT/gpu_check_summary.md (the full log to
# $OUT/gpu_check.log).
#
# Inputs travel in $DMLP_GPU_DATA (the device machine has no ../shared and no network), a copy made
# by --prepare: shared/data/cifar10/{cifar-10-jpeg.tar.gz,train_labels_original_order.npy},
# shared/tools/build_cifar10.py, shared/upstream/Co-teaching.tar.gz, and
# shared/features/cifar10_kmeans_train.npz (the first $DMLP_GPU_FEATURE_DIMS=256 dimensions of the
# shared k-means training features, float16: about 26 MB, so that all of it stays under the 64 MiB a
# device call carries).
# Other variables: DMLP_GPU_WORK (scratch, default /tmp/dmlp-gpu-check), DMLP_GPU_CIFAR (a built
# CIFAR-10 folder to use instead of building one), DMLP_GPU_COT_EPOCHS (20), DMLP_GPU_COT_SECONDS (170),
# DMLP_GPU_PRETRAIN_EPOCHS (5), DMLP_GPU_CHECK_ONLY / DMLP_GPU_CHECK_SKIP (comma-separated stage names),
# PYTHON (python3).
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DMLP_GPU_DATA:-$REPO/.gpu-data}
WORK=${DMLP_GPU_WORK:-/tmp/dmlp-gpu-check}
PY=${PYTHON:-python3}
BUDGET=${DMLP_GPU_BUDGET:-560}
MODE=gpu

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

prepare() {
    local shared=${DMLP_SHARED:-$REPO/../shared}
    local dims=${DMLP_GPU_FEATURE_DIMS:-256}
    for f in data/cifar10/cifar-10-jpeg.tar.gz data/cifar10/train_labels_original_order.npy \
             tools/build_cifar10.py upstream/Co-teaching.tar.gz features/cifar10_kmeans_pca512.npz; do
        [ -f "$shared/$f" ] || { echo "gpu_check --prepare: missing $shared/$f (set DMLP_SHARED)" >&2; exit 2; }
    done
    mkdir -p "$DATA/shared/data/cifar10" "$DATA/shared/tools" "$DATA/shared/upstream" "$DATA/shared/features"
    # copies, not links: links do not travel to the device machine
    cp -f "$shared/data/cifar10/cifar-10-jpeg.tar.gz" "$shared/data/cifar10/train_labels_original_order.npy" \
        "$DATA/shared/data/cifar10/"
    cp -f "$shared/tools/build_cifar10.py" "$DATA/shared/tools/"
    cp -f "$shared/upstream/Co-teaching.tar.gz" "$DATA/shared/upstream/"
    chmod -R u+w "$DATA"
    "$PY" - "$shared/features/cifar10_kmeans_pca512.npz" "$DATA/shared/features/cifar10_kmeans_train.npz" "$dims" <<'EOF'
import sys
import numpy as np
src, dest, dims = sys.argv[1], sys.argv[2], int(sys.argv[3])
with np.load(src) as z:
    # dmlp reproduce --features reads both splits (the test split scores the trained network)
    arrays = {split: np.ascontiguousarray(z[split][:, :dims]).astype(np.float16) for split in ("train", "test")}
np.savez(dest, **arrays)
EOF
    du -sh "$DATA" | sed 's/^/gpu_check --prepare: /'
    echo "gpu_check --prepare: on the device, run benchmarks/gpu_check.sh with carry [\"${DATA#$REPO/}\"]"
}

case "${1:-}" in
    --prepare) prepare; exit 0 ;;
    --dry-run) MODE=dry ;;
    "") ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

SHARED="$DATA/shared"
FEATURES="$SHARED/features/cifar10_kmeans_train.npz"
LABELS="$SHARED/data/cifar10/train_labels_original_order.npy"
if [ ! -f "$FEATURES" ] || [ ! -f "$LABELS" ]; then
    echo "gpu_check: $DATA is not prepared; run benchmarks/gpu_check.sh --prepare first (with ../shared)" >&2
    exit 2
fi
mkdir -p "$WORK"
LOGDIR="$WORK/logs"
rm -rf "$LOGDIR" && mkdir -p "$LOGDIR"
SUMMARY_ROWS="$WORK/summary.rows"
: > "$SUMMARY_ROWS"
START=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if [ "$MODE" = dry ]; then
    DEVICE=cpu
    export CUDA_VISIBLE_DEVICES=""   # CPU even where a GPU is present: the dry run checks the script
else
    DEVICE=cuda
fi

wanted() {
    local name=$1
    if [ -n "${DMLP_GPU_CHECK_ONLY:-}" ] && [[ ",$DMLP_GPU_CHECK_ONLY," != *",$name,"* ]]; then return 1; fi
    if [ -n "${DMLP_GPU_CHECK_SKIP:-}" ] && [[ ",$DMLP_GPU_CHECK_SKIP," == *",$name,"* ]]; then return 1; fi
    return 0
}

# stage NAME LIMIT_SECONDS COMMAND...: runs COMMAND under a limit (never past the budget), logs it,
# and adds a summary row whose result is the last line COMMAND appended to $LOGDIR/NAME.result
# (else the last line of its output).
stage() {
    local name=$1 limit=$2; shift 2
    if ! wanted "$name"; then
        printf '| %s | skipped | 0 | not selected |\n' "$name" >> "$SUMMARY_ROWS"; return 0
    fi
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -lt 20 ]; then
        printf '| %s | skipped | 0 | out of the %s s budget |\n' "$name" "$BUDGET" >> "$SUMMARY_ROWS"; return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit} s) ===" | tee -a "$WORK/gpu_check.log"
    local t0=$(date +%s) rc
    timeout --kill-after=10 "$limit" "$@" > "$LOGDIR/$name.log" 2>&1
    rc=$?
    local secs=$(( $(date +%s) - t0 ))
    cat "$LOGDIR/$name.log" >> "$WORK/gpu_check.log"
    tail -n 25 "$LOGDIR/$name.log"
    local status=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status="timed out"; elif [ $rc -ne 0 ]; then status="failed ($rc)"; fi
    local result=""
    [ -s "$LOGDIR/$name.result" ] && result=$(tail -n 1 "$LOGDIR/$name.result")
    [ -z "$result" ] && result=$(grep -v '^\s*$' "$LOGDIR/$name.log" | tail -n 1 | cut -c1-160)
    printf '| %s | %s | %s | %s |\n' "$name" "$status" "$secs" "${result//|//}" >> "$SUMMARY_ROWS"
    return 0
}

# -- setup: the package, CIFAR-10, the upstream clone ----------------------------------------------

setup() {
    set -e
    if ! "$PY" -c "import dmlp_plugin, dmlp_integrations, dmlp_adapters; from dmlp_plugin.plugins import get_adapter; get_adapter('coteaching')" 2>/dev/null; then
        "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e "$REPO"
    fi
    "$PY" -c "import torch, dmlp_plugin; print(f'dmlp_plugin {dmlp_plugin.__version__}, torch {torch.__version__}, ' + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'))" | tee "$LOGDIR/setup.result"
    if [ -n "${DMLP_GPU_CIFAR:-}" ]; then
        CIFAR=$DMLP_GPU_CIFAR
    else
        CIFAR="$WORK/cifar10"
        [ -f "$CIFAR/cifar-10-batches-py/test_batch" ] || "$PY" "$SHARED/tools/build_cifar10.py" "$CIFAR"
    fi
    rm -rf "$WORK/upstream" && mkdir -p "$WORK/upstream"
    tar -xzf "$SHARED/upstream/Co-teaching.tar.gz" -C "$WORK/upstream"
    if [ "$MODE" = dry ]; then   # a tiny CIFAR-10 (250 train, 50 test images) for pretraining
        "$PY" - "$CIFAR" "$WORK/tiny-cifar10" <<'EOF'
import pickle, sys
from pathlib import Path
# the package's restricted reader: a batch may hold numpy arrays and plain containers, nothing else
from dmlp_plugin.safe_pickle import load_pickle
src = Path(sys.argv[1]); src = src if src.name == "cifar-10-batches-py" else src / "cifar-10-batches-py"
dest = Path(sys.argv[2]) / "cifar-10-batches-py"; dest.mkdir(parents=True, exist_ok=True)
for name, n in [(f"data_batch_{i}", 50) for i in range(1, 6)] + [("test_batch", 50)]:
    d = load_pickle(src / name, what="CIFAR-10 batch")
    d = {"batch_label": d["batch_label"], "labels": d["labels"][:n], "data": d["data"][:n], "filenames": d["filenames"][:n]}
    with open(dest / name, "wb") as fh:
        pickle.dump(d, fh)
(dest / "batches.meta").write_bytes((src / "batches.meta").read_bytes())
EOF
    fi
    set +e
}
CIFAR=${DMLP_GPU_CIFAR:-$WORK/cifar10}
if wanted setup; then
    stage setup 120 bash -c "$(declare -f setup); PY='$PY' REPO='$REPO' SHARED='$SHARED' WORK='$WORK' MODE='$MODE' LOGDIR='$LOGDIR' DMLP_GPU_CIFAR='${DMLP_GPU_CIFAR:-}'; setup"
fi

# -- the CUDA-marked tests -------------------------------------------------------------------------

cuda_tests() {
    "$PY" -m pytest -q -m cuda -p no:cacheprovider "$REPO/tests" 2>&1 | tee "$LOGDIR/cuda-tests.out"
    local rc=${PIPESTATUS[0]}
    grep -E '(passed|failed|skipped|deselected|error)' "$LOGDIR/cuda-tests.out" | tail -n 1 > "$LOGDIR/cuda-tests.result"
    return "$rc"
}
stage cuda-tests 90 bash -c "$(declare -f cuda_tests); PY='$PY' REPO='$REPO' LOGDIR='$LOGDIR'; cuda_tests"

# -- purification speed, feature throughput --------------------------------------------------------

if [ "$MODE" = dry ]; then
    SPEED_ARGS=(--rows 3000 --dims 64 --epochs 3 --naive-epochs 1 --trusted 200)
    FEAT_ARGS=(--images 32 --batch-size 16)
else
    SPEED_ARGS=(--naive-epochs 3)
    FEAT_ARGS=(--images 10000 --batch-size 512)
fi
stage speed 110 "$PY" "$REPO/benchmarks/gpu_speed.py" purify --features "$FEATURES" --labels "$LABELS" \
    --device "$DEVICE" "${SPEED_ARGS[@]}" --summary "$LOGDIR/speed.result"
stage features 60 "$PY" "$REPO/benchmarks/gpu_speed.py" features --root "$CIFAR" --device "$DEVICE" \
    "${FEAT_ARGS[@]}" --summary "$LOGDIR/features.result"

# -- one Table 4 cell, shortened: Co-teaching at symmetric 80%, with and without --dmlp ------------

table4() {
    local extra
    if [ "$MODE" = dry ]; then
        extra=(--smoke)
    else
        extra=(--epochs "${DMLP_GPU_COT_EPOCHS:-20}" --time-limit "${DMLP_GPU_COT_SECONDS:-170}")
    fi
    "$PY" -m dmlp_plugin reproduce table4 "${extra[@]}" --upstream-root "$WORK/upstream" --data "$CIFAR" \
        --shared "$SHARED" --features "$FEATURES" --methods coteaching --rates 0.8 --jobs 2 --force \
        --results-dir "$WORK/results" --markdown --device "$DEVICE" || return $?
    "$PY" - "$WORK/results/table4" > "$LOGDIR/table4.result" <<'EOF'
import json, sys
from pathlib import Path
rows = {}
for p in Path(sys.argv[1]).glob("*.json"):
    r = json.loads(p.read_text()); m = r["metrics"]
    acc = "none" if m["test_accuracy"] is None else f"{m['test_accuracy']:.2f}%"
    inj = ", injected " + "+".join(sorted({i["part"] for i in r["dmlp_record"]["injections"]})) if r["dmlp_record"] else ""
    rows[r["series"]] = f"{r['series']} {acc} after {m['trained_epochs']} ep ({r['run_s']:.0f} s{inj})"
print("; ".join(rows[k] for k in sorted(rows)))
EOF
}
stage table4 230 bash -c "$(declare -f table4); PY='$PY' WORK='$WORK' CIFAR='$CIFAR' SHARED='$SHARED' FEATURES='$FEATURES' MODE='$MODE' DEVICE='$DEVICE' LOGDIR='$LOGDIR' DMLP_GPU_COT_EPOCHS='${DMLP_GPU_COT_EPOCHS:-20}' DMLP_GPU_COT_SECONDS='${DMLP_GPU_COT_SECONDS:-170}'; table4"

# -- a short SimCLR pretraining, its features, purified in paper mode and in the default -----------

if [ "$MODE" = dry ]; then
    PRE_ROOT="$WORK/tiny-cifar10"; PRE_ARGS=(--epochs 1 --batch-size 64 --workers 0); PAPER_ARGS=(--epochs 3)
else
    PRE_ROOT="$CIFAR"; PRE_ARGS=(--epochs "${DMLP_GPU_PRETRAIN_EPOCHS:-5}" --batch-size 512 --workers 12); PAPER_ARGS=()
fi
pretrain() {
    "$PY" -m dmlp_plugin pretrain --dataset cifar10 --root "$PRE_ROOT" "${PRE_ARGS[@]}" --device "$DEVICE" \
        --no-resume -o "$WORK/simclr.pt"
    local rc=$?
    [ -f "$WORK/simclr.pt" ] && echo "checkpoint $(du -h "$WORK/simclr.pt" | cut -f1) written" > "$LOGDIR/pretrain.result"
    return $rc
}
stage pretrain 150 bash -c "$(declare -f pretrain); PY='$PY' WORK='$WORK' PRE_ROOT='$PRE_ROOT' DEVICE='$DEVICE' LOGDIR='$LOGDIR'; PRE_ARGS=(${PRE_ARGS[*]}); pretrain"

simclr() {
    set -e
    # a checkpoint from a pretraining stopped by its limit still holds its last finished epoch
    [ -f "$WORK/simclr.pt" ] || { echo "no checkpoint: the pretrain stage did not finish an epoch"; exit 3; }
    local d="$WORK/simclr"; rm -rf "$d"; mkdir -p "$d"
    "$PY" -m dmlp_plugin features --dataset cifar10 --root "$PRE_ROOT" --checkpoint "$WORK/simclr.pt" \
        --device "$DEVICE" --no-cache -o "$d/feats.npy"
    "$PY" -m dmlp_plugin noise --dataset cifar10 --root "$PRE_ROOT" --kind symmetric --rate 0.8 -o "$d/noisy.npy"
    local per_class=100; [ "$MODE" = dry ] && per_class=5
    "$PY" -m dmlp_plugin trusted --dataset cifar10 --root "$PRE_ROOT" --per-class $per_class -o "$d/trusted.npy"
    "$PY" - "$PRE_ROOT" "$d/clean.npy" <<'EOF'
import sys
import numpy as np
from dmlp_plugin.data import load_dataset
np.save(sys.argv[2], load_dataset("cifar10", sys.argv[1], "train").targets)
EOF
    for mode in paper default; do
        local args=()  # a dry run shortens paper mode's epochs; the default has none
        [ "$mode" = paper ] && args=("${PAPER_ARGS[@]}")
        "$PY" -m dmlp_plugin purify --features "$d/feats.npy" --labels "$d/noisy.npy" --val-indices "$d/trusted.npy" \
            --val-labels "$d/trusted_labels.npy" --mode $mode "${args[@]}" --device "$DEVICE" --no-progress \
            -o "$d/purified-$mode.npz"
        "$PY" "$REPO/benchmarks/gpu_speed.py" score --purified "$d/purified-$mode.npz" --clean "$d/clean.npy" \
            --name "SimCLR $mode" --summary "$d/scores"
    done
    paste -sd';' "$d/scores" | sed 's/;/; /g' > "$LOGDIR/simclr.result"
}
stage simclr 90 bash -c "$(declare -f simclr); PY='$PY' REPO='$REPO' WORK='$WORK' PRE_ROOT='$PRE_ROOT' DEVICE='$DEVICE' MODE='$MODE' LOGDIR='$LOGDIR'; PAPER_ARGS=(${PAPER_ARGS[*]}); simclr"

# -- the summary -----------------------------------------------------------------------------------

TOTAL=$(( $(date +%s) - START ))
{
    echo "## dmlp-plugin GPU check ($MODE run, $(date -u +%Y-%m-%dT%H:%MZ), ${TOTAL} s)"
    echo
    echo "| stage | status | seconds | result |"
    echo "|---|---|---|---|"
    cat "$SUMMARY_ROWS"
} > "$WORK/gpu_check_summary.md"
echo
cat "$WORK/gpu_check_summary.md"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK/gpu_check_summary.md" "$OUT/gpu_check_summary.md"
    cp "$WORK/gpu_check.log" "$OUT/gpu_check.log" 2>/dev/null || true
fi
grep -qE '\| (failed|timed out)' "$SUMMARY_ROWS" && exit 1
exit 0
