#!/usr/bin/env bash
# The GPU lease command: the whole GPU path proven in one run of about 8
# minutes on a lent machine (the `device` tool: one GPU, no network,
# torch and CUDA's compiler installed, at most 10 minutes a command):
#
#   bash benchmarks/gpu_lease_wheels.sh       # here, once: wheels into .whl/
#   OUT=$OUT bash benchmarks/gpu_lease.sh     # there, carrying .whl
#
#   bash benchmarks/gpu_lease.sh --rehearse   # on a CPU, in this environment
#
# Stages, most valuable first, each under its own time limit (together
# 570 s, so that one 600 s call of the device tool always comes back);
# SUMMARY.md is rewritten after every stage, so a run cut short still
# reports what ran. The mmcv build is most of it: ~4000 CPU-seconds for
# sm_90 (benchmarks/MMCV_CUDA_BUILD.md), ~4-5 minutes on 16 cores.
#   1. install: the OpenMMLab wheels carried in .whl/, and mmcv 2.1.0 built
#      there with CUDA ops for the visible GPU (only a source release exists,
#      and a wheel built here would not match the lent machine's Python and
#      torch);
#   2. mmcv's CUDA ops that the table configs use (nms, roi_align,
#      sigmoid_focal_loss) against reference implementations, fp32 and fp16
#      (benchmarks/mmcv_ops_check.py);
#   3. every adapter path (plain, fused autograd functions, compiled) against
#      the plain autograd path: fp32, fp16 mixed precision as training runs
#      it, LoRA merged and unmerged, with and without with_cp
#      (benchmarks/impl_parity.py);
#   4. the three Mona table configs at their real sizes, launched as users
#      launch them (tools/dist_train.sh -> tools/dist_test.sh, NCCL), in
#      parallel on the one GPU; the COCO run resumes with --resume from its
#      half-way iteration checkpoint (tools/analysis/dry_run.py); CUDA peak
#      memory per GPU beside the paper's 32 GB V100s;
#   5. step time and peak memory per method at the COCO setting
#      (benchmarks/run_benchmarks.py --setting coco), Full and Mona also
#      with the fused and the compiled paths.
# At most 8 files come back ($OUT): SUMMARY.md, lease.log, mmcv_build.log,
# mmcv_ops.json, impl_parity.json, tables.json, results_coco.json,
# RESULTS_coco.md. Record them under benchmarks/cuda/.
#
# --rehearse (tests/test_gpu_lease.py, on every CI run): the same stages on
# the CPU of the current environment, nothing installed, small: stage 2
# runs the ops that have CPU kernels, stage 3 the fused paths (the compiled
# ones take minutes to compile on a CPU: tests/test_impl.py covers them),
# stage 4 the toy configs with two gloo processes, stage 5 a tiny Swin
# (--quick) without the compiled path.
set -uo pipefail
cd "$(dirname "$0")/.."
SELF=benchmarks/gpu_lease.sh
export PY=${PYTHON:-python3}
export OUT=${OUT:-/tmp/out}
export WORK=${LEASE_WORK:-/tmp/mmadapter_lease}

# ---- the stages' bodies (run as `bash gpu_lease.sh --stage NAME`, so that
# each runs under its own `timeout`)

stage_install() {
  set -e
  mkdir -p "$WORK/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
    --target "$WORK/site" .whl/*.whl
  # mmpretrain 1.2 breaks on import beside transformers 5 (its multimodal
  # models): an older transformers seen first makes it skip them
  mkdir -p "$WORK/site/transformers-0.0.1.dist-info"
  printf 'Metadata-Version: 2.1\nName: transformers\nVersion: 0.0.1\n' \
    > "$WORK/site/transformers-0.0.1.dist-info/METADATA"
  tar xzf .whl/mmcv-2.1.0.tar.gz -C "$WORK"
  sed -i 's/-std=c++17/-std=c++20/g' "$WORK/mmcv-2.1.0/setup.py"
  # CUDA_HOME, TORCH_CUDA_ARCH_LIST (the visible GPU's) and CPATH, as
  # tools/setup_env.sh builds mmcv
  local env name value
  env=$("$PY" mmadapter/cli/cuda_env.py build-env)
  echo "$env"
  while IFS='=' read -r name value; do
    case $name in CUDA_HOME|TORCH_CUDA_ARCH_LIST|CPATH) export "$name=$value" ;; esac
  done <<< "$env"
  (cd "$WORK/mmcv-2.1.0" && FORCE_CUDA=1 MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) \
     LDFLAGS=-Wl,--strip-debug "$PY" setup.py build_ext --inplace \
     > "$OUT/mmcv_build.log" 2>&1) \
    || { tail -30 "$OUT/mmcv_build.log"; exit 1; }
  tail -3 "$OUT/mmcv_build.log"
}

stage_ops() {
  "$PY" benchmarks/mmcv_ops_check.py --device "$DEVICE" --out "$OUT/mmcv_ops.json"
}

stage_parity() {
  "$PY" benchmarks/impl_parity.py --device "$DEVICE" \
    --out "$OUT/impl_parity.json" $PARITY_OPTIONS
}

# the three settings at once (one GPU holds all three), each launched as
# users launch it; the COCO one also resumes half-way
stage_tables() {
  local pids=() configs i=0 config extra rc=0
  read -r -a configs <<< "$TABLES"
  for config in "${configs[@]}"; do
    extra=(--iters 2)
    case $config in *coco*) extra=(--iters 4 --resume-check) ;; esac
    "$PY" tools/analysis/dry_run.py "$config" --gpus "$PROCS" \
      --port $((29510 + i)) --work-dir "$WORK/tables/$i" "${extra[@]}" \
      > "$WORK/table_$i.log" 2>&1 &
    pids+=($!); i=$((i + 1))
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || {
      rc=1; echo "--- ${configs[$i]} failed:"; tail -25 "$WORK/table_$i.log"; }
  done
  "$PY" - "$WORK/tables" "$OUT/tables.json" <<'PYEOF'
import glob, json, sys
runs = [json.load(open(p))
        for p in sorted(glob.glob(sys.argv[1] + '/*/dry_run.json'))]
json.dump(runs, open(sys.argv[2], 'w'), indent=1)
for r in runs:
    mem = r.get('cuda_peak_mib')
    share = f'{mem / 32768:.0%} of a 32 GB V100' if mem else 'no CUDA'
    print(f"{r['config']}: {r['seconds_per_iter']} s/iter, peak {mem} MiB "
          f"per GPU ({share}), losses finite {r['finite_losses']}, "
          f"metrics {json.dumps(r['metrics'])}, "
          f"resume {json.dumps(r.get('resume'))}")
PYEOF
  return $rc
}

# Full, the floor and Mona first (the issue's target), then the other
# methods, then Mona's fused and compiled paths; the results file is
# rewritten after each run, so a stage cut short keeps what finished
stage_methods() {
  set -e
  local floor='Fixed (grad through blocks)'
  bench auto "$WORK/bench_auto" Full "$floor" Mona
  bench auto "$WORK/bench_others" Full "$floor" LoRA AdaptFormer Houlsby LoRand
  bench fused "$WORK/bench_fused" Full Mona
  # (inductor takes minutes to compile C++ on a CPU: the rehearsal leaves
  # the compiled path to tests/test_impl.py's CPU checks)
  [ "$DEVICE" = cpu ] || bench compiled "$WORK/bench_compiled" Full Mona
}

# bench IMPL OUT_DIR METHOD... : one run_benchmarks.py run at the COCO
# setting, then results_coco.json and RESULTS_coco.md rewritten from every
# run so far
bench() {
  local impl=$1 dir=$2
  shift 2
  "$PY" benchmarks/run_benchmarks.py --device "$DEVICE" --setting coco \
    --repeats "$REPEATS" --out-dir "$dir" --impl "$impl" $QUICK --methods "$@"
  "$PY" - "$WORK" "$OUT" <<'PYEOF'
import glob, json, os.path as osp, sys
work, out = sys.argv[1:]
merged, tables = {}, []
for name in ('auto', 'others', 'fused', 'compiled'):
    for path in glob.glob(f'{work}/bench_{name}/results_*.json'):
        merged[name] = json.load(open(path))
    for path in glob.glob(f'{work}/bench_{name}/RESULTS_*.md'):
        tables.append(f'<!-- {name} -->\n' + open(path).read())
json.dump(merged, open(osp.join(out, 'results_coco.json'), 'w'), indent=1)
open(osp.join(out, 'RESULTS_coco.md'), 'w').write('\n'.join(tables))
PYEOF
}

if [ "${1:-}" = --stage ]; then
  "stage_$2"
  exit $?
fi

# ---- the run

REHEARSE=0
case "${1:-}" in
  --rehearse) REHEARSE=1 ;;
  "") ;;
  *) echo "gpu_lease.sh: unknown argument $1 (--rehearse)" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
LOG=$OUT/lease.log
SUMMARY=$OUT/SUMMARY.md
: > "$LOG"
T0=$SECONDS
ROWS=()

write_summary() {
  {
    echo "# GPU lease: $([ $REHEARSE = 1 ] && echo 'CPU rehearsal' || echo 'lent machine')"
    echo
    echo "- machine: $MACHINE"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- elapsed: $((SECONDS - T0)) s"
    echo
    echo "| stage | result | seconds | limit |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
  } > "$SUMMARY"
}

# run_stage TITLE LIMIT NAME : `bash gpu_lease.sh --stage NAME` under
# `timeout LIMIT`, its output appended to lease.log; the result recorded.
run_stage() {
  local title=$1 limit=$2 start=$SECONDS rc result
  echo "=== $title (limit ${limit} s)" | tee -a "$LOG"
  timeout --kill-after=10 "$limit" bash "$SELF" --stage "$3" >> "$LOG" 2>&1
  rc=$?
  case $rc in
    0) result=passed ;;
    124|137) result="TIMED OUT" ;;
    *) result="FAILED (exit $rc)" ;;
  esac
  ROWS+=("| $title | $result | $((SECONDS - start)) | $limit |")
  echo "=== $title: $result after $((SECONDS - start)) s" | tee -a "$LOG"
  write_summary
  return $rc
}

if [ $REHEARSE = 1 ]; then
  export DEVICE=cpu PROCS=2 QUICK=--quick REPEATS=1 PARITY_OPTIONS='--paths fused'
  # a 2-core CPU trains the toy configs in minutes, not seconds
  LIMIT_OPS=120 LIMIT_PARITY=300 LIMIT_TABLES=1200 LIMIT_METHODS=600
  export TABLES="configs/toy/retinanet_swin_toy_voc.py configs/toy/cascade_swin_toy_coco.py configs/toy/upernet_swin_toy_ade20k.py"
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  MACHINE="CPU rehearsal: $(uname -m), $(nproc) cores"
  write_summary
else
  export DEVICE=cuda PROCS=1 QUICK= REPEATS=${REPEATS:-5} PARITY_OPTIONS=
  # together 570 s: one 600 s call of the device tool always comes back
  LIMIT_INSTALL=330 LIMIT_OPS=30 LIMIT_PARITY=60 LIMIT_TABLES=110 LIMIT_METHODS=40
  export TABLES="configs/mona/retinanet_swin_l_voc.py configs/mona/cascade_swin_b_coco.py configs/mona/upernet_swin_l_ade20k.py"
  MACHINE=$(nvidia-smi --query-gpu=name,memory.total,driver_version \
              --format=csv,noheader 2>/dev/null | head -1)
  export PYTHONPATH=$WORK/mmcv-2.1.0:$WORK/site:$PWD
  write_summary
  run_stage "1 install, mmcv CUDA build" "$LIMIT_INSTALL" install \
    || { echo "the stack did not install: nothing else can run"; exit 1; }
fi

if ! "$PY" -c "import mmadapter, torch; print('stack ok: torch', torch.__version__)" >> "$LOG" 2>&1; then
  ROWS+=("| import mmadapter | FAILED (lease.log) | | |"); write_summary; exit 1
fi
status=0
run_stage "2 mmcv ops vs references" "$LIMIT_OPS" ops || status=1
run_stage "3 adapter paths vs plain autograd" "$LIMIT_PARITY" parity || status=1
run_stage "4 table configs: dist_train, dist_test, --resume" "$LIMIT_TABLES" tables || status=1
run_stage "5 methods at the COCO setting" "$LIMIT_METHODS" methods || status=1
cat "$SUMMARY"
exit $status
