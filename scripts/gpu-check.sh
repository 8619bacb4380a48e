#!/usr/bin/env bash
# The GPU check, in steps of at most ~6 minutes each (install included), most informative first.
# Install this working tree without downloads, print the environment, run the named steps, and
# after EACH step write $OUT/results-<step>.json (status, seconds, parsed numbers): a call killed
# later keeps every finished step's results.  Every named step runs even if an earlier one failed;
# the exit status is non-zero if any step failed.
#
#   scripts/gpu-check.sh STEP...     (no STEP: smoke)
#       smoke   scripts/gpu_smoke.py: one small model per kernel family on CUDA vs the CPU provider
#               and CUDA graphs (capture + replay), one line per family               limit  90 s
#       unit    python -m pytest -m gpu without the backend suite and the models tier  limit 300 s
#       suite   tests/gpu/test_gpu_backend_suite.py (ONNX backend suite, CPU vs CUDA)   limit 330 s
#       models  tests/gpu/test_gpu_models.py (models tier and torch exports on CUDA)    limit 330 s
#       bench   benchmarks/bench_gpu.py --json $OUT/bench_gpu.json                      limit 240 s
#       memory  benchmarks/bench_memory.py gpu (memory patterns on/off)                 limit 180 s
#       optbench benchmarks/bench_optimizer.py --devices cuda                           limit 330 s
#       all     every step above in that order (more than one call's 10 minutes: only for a
#               machine without that limit)
# Order of the calls on a lent machine (each call one line of the device tool, timeout_s=480):
#   1. smoke unit    2. suite    3. models    4. bench memory    5. optbench
#
# How the times were estimated (no GPU was available when this was written): every step runs
# under `timeout` (SIGINT first, so pytest still writes its junit.xml), so no step can exceed its
# limit; setup (nvidia-smi, version query, pip install --no-index) takes seconds, and the first
# step of a call also compiles the raw CUDA units it launches (NVRTC, about 1-2 s per unit, about
# 15 units, cached in $CUPY_CACHE_DIR for the later steps of the same call).  The limits come
# from the previous single-call split (GPU tier 360 s, benchmark 150 s, which together with setup
# filled the 10 minutes) divided by content: the backend suite and the models tier are the
# bulk of the GPU tier (the suite is ~1,300 small models: on the double it takes ~70 s on 2
# CPU cores; on the GPU each model adds session creation and first launches); the 117 other GPU
# tests are small. The smoke step took 0.2 s of runs on the double; on a GPU its cost is the
# NVRTC compiles plus CuPy's first-use setup, estimated at 20-40 s.
#
# Files written to $OUT (at most 8 per call, as the device tool brings back): setup.log,
# <step>.log, results-<step>.json, and per step: smoke.jsonl, junit-<step>.xml,
# gpu_backend_suite.json, gpu_models.json, bench_gpu.json, bench_optimizer.json.
#
# Prepare here, on the development machine, once (from the repository root):
#   echo /.whl/ >> .git/info/exclude; echo /.gpucache/ >> .git/info/exclude
#   # wheels the GPU image lacks, for its Python 3.12 (cp312), without their dependencies:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl nvidia-cudnn-frontend==1.32.0
#   #   (11.6 MB; it declares nvidia-cutlass-dsl and apache-tvm-ffi, needed only by its DSL kernels,
#   #    not by the cuDNN graph API that the Conv kernels use. Add nvmath-python==1.0.0 the same way
#   #    only if the CUDA provider imports it.)
#   # the models tier's .onnx files (the GPU machine cannot fetch their wheels):
#   ORTGPU_MODEL_CACHE=.gpucache/models python3 -c "import sys; sys.path.insert(0, 'tests'); \
#       import model_zoo; [model_zoo.model_path(n) for n in model_zoo.MODELS]"
#   rm -f .gpucache/models/*.whl      # keep only the 4 .onnx files (about 18 MB)
# Then call the device tool's `run` with carry [".whl", ".gpucache"] and a command such as
#   ORTGPU_COMMIT=<commit> bash scripts/gpu-check.sh smoke unit
# (every call installs again, which takes seconds).
#
# Written without a GPU: NOT YET RUN on the GPU machine.
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export ORTGPU_REPORT_DIR=$OUT
export ORTGPU_MODEL_CACHE=${ORTGPU_MODEL_CACHE:-$ROOT/.gpucache/models}
export ORTGPU_TRANSFORMER_CACHE=${ORTGPU_TRANSFORMER_CACHE:-/tmp/ortgpu-transformers}
export ONNX_HOME=${ONNX_HOME:-/tmp/ortgpu_onnx_home}
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupy-kernel-cache}

STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(smoke)
ORDER=(smoke unit suite models bench memory optbench)
for s in "${STEPS[@]}"; do
    [ "$s" = all ] || [[ " ${ORDER[*]} " == *" $s "* ]] || { echo "gpu-check: unknown step '$s' (${ORDER[*]} all)"; exit 2; }
done
wants() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

RESULTS=()   # "name rc seconds" per step
FAILED=0
step() {  # step NAME LOGFILE COMMAND...: run, append output to LOGFILE, record the status
    local name=$1 log=$2; shift 2
    local t0=$SECONDS
    echo "=== $name: $*" | tee -a "$log"
    "$@" >>"$log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$log"
    RESULTS+=("$name $rc $((SECONDS - t0))")
    [ $rc -ne 0 ] && FAILED=1
    return 0
}

SETUP=$OUT/setup.log
: >"$SETUP"

# --- environment -----------------------------------------------------------------------------
step nvidia-smi "$SETUP" nvidia-smi
step versions "$SETUP" "$PY" - <<'EOF'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("numpy", "onnx", "onnxruntime", "ml_dtypes", "scipy", "cupy", "torch", "transformers",
             "cudnn", "pytest"):
    try:
        m = importlib.import_module(name)
        print(f"{name:14s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name:14s} missing ({type(e).__name__}: {e})")
try:
    import cupy
    p = cupy.cuda.runtime.getDeviceProperties(0)
    print("device", p["name"], f"sm_{p['major']}{p['minor']}", "driver", cupy.cuda.runtime.driverGetVersion(),
          "runtime", cupy.cuda.runtime.runtimeGetVersion())
except Exception as e:  # noqa: BLE001
    print("cupy device query failed:", type(e).__name__, e)
try:
    import torch
    print("torch cuda", torch.version.cuda, torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except Exception as e:  # noqa: BLE001
    print("torch query failed:", type(e).__name__, e)
EOF

# --- install, no network ---------------------------------------------------------------------
if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
    step carried-wheels "$SETUP" "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site "$ROOT"/.whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The install must make *this* tree's ortgpu.providers importable from anywhere.
tree_importable() {
    (cd /tmp && "$PY" -c "import os, sys, ortgpu.providers as p; \
sys.exit(not os.path.realpath(p.__file__).startswith(os.path.realpath(sys.argv[1])))" "$ROOT")
}
LINKS=()
install_tree() {
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e "$ROOT" && tree_importable && return 0
    # No editable install: lay the package out as setuptools maps it (providers/, memory/ and
    # profiling/ inside ortgpu/) with links in this copy, removed on exit, and use PYTHONPATH.
    echo "editable install unusable: linking providers/, memory/, profiling/ into ortgpu/"
    local d
    for d in providers memory profiling; do
        [ -e "ortgpu/$d" ] || { ln -s "../$d" "ortgpu/$d" && LINKS+=("ortgpu/$d"); }
    done
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
    tree_importable
}
trap '[ ${#LINKS[@]} -gt 0 ] && rm -f "${LINKS[@]}"' EXIT
step install "$SETUP" install_tree
step providers "$SETUP" "$PY" -c "import ortgpu; print('ortgpu', ortgpu.__file__); \
print('available providers:', ortgpu.get_available_providers()); print('device:', ortgpu.get_device())"

# --- the steps, each writing results-<step>.json as soon as it ends ----------------------------
write_results() {  # write_results STEP: results-STEP.json from the step records so far and its files
    GPU_CHECK_STEPS="$(printf '%s\n' "${RESULTS[@]}")" "$PY" "$ROOT/scripts/gpu_check_results.py" "$OUT" "$1" \
        || echo "gpu-check: could not write results-$1.json"
}
limited() { local secs=$1; shift; timeout -s INT -k 20 "$secs" "$@"; }
pytest_step() {  # pytest_step STEP LIMIT ARGS...
    local name=$1 secs=$2; shift 2
    step "$name" "$OUT/$name.log" limited "$secs" "$PY" -m pytest -m gpu -p no:cacheprovider -rfEs \
        --junitxml="$OUT/junit-$name.xml" "$@"
    write_results "$name"
}
for name in "${ORDER[@]}"; do
    wants "$name" || continue
    case $name in
        smoke)
            rm -f "$OUT/smoke.jsonl"
            step smoke "$OUT/smoke.log" limited "${GPU_CHECK_SMOKE_TIMEOUT:-90}" \
                "$PY" scripts/gpu_smoke.py --json "$OUT/smoke.jsonl"
            cat "$OUT/smoke.log"
            write_results smoke ;;
        unit)
            pytest_step unit "${GPU_CHECK_UNIT_TIMEOUT:-300}" tests \
                --ignore tests/gpu/test_gpu_backend_suite.py \
                --ignore tests/gpu/test_gpu_models.py ;;
        suite)
            pytest_step suite "${GPU_CHECK_SUITE_TIMEOUT:-330}" tests/gpu/test_gpu_backend_suite.py ;;
        models)
            pytest_step models "${GPU_CHECK_MODELS_TIMEOUT:-330}" tests/gpu/test_gpu_models.py ;;
        bench)
            step bench "$OUT/bench.log" limited "${GPU_CHECK_BENCH_TIMEOUT:-240}" \
                "$PY" benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json"
            write_results bench ;;
        memory)
            step memory "$OUT/memory.log" limited "${GPU_CHECK_MEMORY_TIMEOUT:-180}" \
                "$PY" benchmarks/bench_memory.py gpu --json "$OUT/bench_memory.json"
            write_results memory ;;
        optbench)
            step optbench "$OUT/optbench.log" limited "${GPU_CHECK_OPTBENCH_TIMEOUT:-330}" \
                "$PY" benchmarks/bench_optimizer.py --devices cuda --json "$OUT/bench_optimizer.json"
            write_results optbench ;;
    esac
done

echo "gpu-check: steps: ${RESULTS[*]}"
[ $FAILED -eq 0 ] && echo "gpu-check: all steps passed" || echo "gpu-check: SOME STEPS FAILED"
exit $FAILED
