#!/usr/bin/env bash
# One call on the lent GPU machine (no network): install this working tree without downloads, print
# the environment, run the GPU test tier and the GPU benchmark, and leave logs and a results JSON
# in $OUT (default ./gpu-check-out). Every step runs even if an earlier one failed; the exit status
# is non-zero if any step failed.
#
#   scripts/gpu-check.sh [all|tests|suite|models|bench|memory|optbench]...  (default: all = tests + bench)
#       tests   python -m pytest -m gpu (the whole GPU tier)
#       suite   only tests/gpu/test_gpu_backend_suite.py (ONNX backend suite, CPU vs CUDA)
#       models  only tests/gpu/test_gpu_models.py (models tier and torch exports on CUDA)
#       bench   benchmarks/bench_gpu.py --json $OUT/bench_gpu.json
#       memory  benchmarks/bench_memory.py gpu (memory patterns on/off: peak device memory, latency);
#               its log goes to bench.log and its numbers into results.json ("memory"). Not part of
#               `all` (whose limits fill the 10 minutes): run `memory bench` in a second call
#       optbench  benchmarks/bench_optimizer.py --devices cuda --json $OUT/bench_optimizer.json
#               (nodes, launches and latency per optimization level; not part of `all`: run it
#               in a call of its own, it writes bench_optimizer.log and bench_optimizer.json)
#
# Files written to $OUT (at most 8, as the device tool brings back): setup.log, pytest.log,
# junit.xml, gpu_backend_suite.json, gpu_models.json, bench.log, bench_gpu.json, results.json.
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
#   ORTGPU_COMMIT=<commit> bash scripts/gpu-check.sh
# A whole call has 10 minutes: pytest is stopped after $GPU_CHECK_PYTEST_TIMEOUT s (360) and the
# benchmark after $GPU_CHECK_BENCH_TIMEOUT s (150). If that is not enough, run `tests` and `bench`
# in two calls (with timeout_s=600 each; every call installs again, which takes seconds).
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
[ ${#STEPS[@]} -eq 0 ] && STEPS=(all)
wants() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }
named() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }  # not via all

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

# --- GPU tier ---------------------------------------------------------------------------------
# Time limits (seconds) keep the whole call inside the device tool's 10 minutes; SIGINT lets pytest
# write its junit.xml and summary when stopped.
PYTEST_LIMIT=${GPU_CHECK_PYTEST_TIMEOUT:-360}
BENCH_LIMIT=${GPU_CHECK_BENCH_TIMEOUT:-150}
MEMORY_LIMIT=${GPU_CHECK_MEMORY_TIMEOUT:-120}
PYTEST=(timeout -s INT -k 20 "$PYTEST_LIMIT" "$PY" -m pytest -m gpu -p no:cacheprovider -rfEsP
        --junitxml="$OUT/junit.xml")
if wants tests; then
    step pytest-gpu "$OUT/pytest.log" "${PYTEST[@]}"
else
    wants suite && step pytest-suite "$OUT/pytest.log" "${PYTEST[@]}" tests/gpu/test_gpu_backend_suite.py
    wants models && step pytest-models "$OUT/pytest.log" "${PYTEST[@]}" tests/gpu/test_gpu_models.py
fi

# --- benchmark --------------------------------------------------------------------------------
if wants bench; then
    step bench-gpu "$OUT/bench.log" timeout -s INT -k 20 "$BENCH_LIMIT" \
        "$PY" benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json"
fi
MEMORY_JSON=/tmp/ortgpu-bench-memory.json   # not in $OUT: the device tool brings back 8 files at most
if named memory; then
    rm -f "$MEMORY_JSON"
    step bench-memory "$OUT/bench.log" timeout -s INT -k 20 "$MEMORY_LIMIT" \
        "$PY" benchmarks/bench_memory.py gpu --json "$MEMORY_JSON"
fi

if [[ " ${STEPS[*]} " == *" optbench "* ]]; then  # only when named: `all` stays within 8 files
    step bench-optimizer "$OUT/bench_optimizer.log" timeout -s INT -k 20 "${GPU_CHECK_OPTBENCH_TIMEOUT:-480}" \
        "$PY" benchmarks/bench_optimizer.py --devices cuda --json "$OUT/bench_optimizer.json"
fi

# --- results.json -----------------------------------------------------------------------------
GPU_CHECK_STEPS="$(printf '%s\n' "${RESULTS[@]}")" GPU_CHECK_MEMORY_JSON="$MEMORY_JSON" "$PY" - "$OUT" <<'EOF'
import datetime, json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
steps = []
for line in os.environ["GPU_CHECK_STEPS"].splitlines():
    name, rc, secs = line.rsplit(" ", 2)
    steps.append({"step": name, "exit": int(rc), "seconds": int(secs)})
res = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
       "commit": os.environ.get("ORTGPU_COMMIT", "unknown"), "steps": steps,
       "ok": all(s["exit"] == 0 for s in steps)}
junit = os.path.join(out, "junit.xml")
if os.path.exists(junit):
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    res["pytest"] = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
for name, key in (("gpu_backend_suite.json", "backend_suite"), ("bench_gpu.json", "bench"),
                  ("bench_optimizer.json", "optimizer")):
    path = os.path.join(out, name)
    if os.path.exists(path):
        data = json.load(open(path))
        if key == "backend_suite":
            s = dict(data.get("summary", {}))
            s.pop("cuda_failures", None)
            res[key] = s
        elif key == "optimizer":
            res[key] = [{k: r.get(k) for k in ("model", "level", "nodes", "launches", "ms")}
                        for r in data.get("rows", [])]
        else:
            res[key] = {"device": data.get("device"),
                        "rows": [{k: r.get(k) for k in ("model", "batch", "ortgpu_ms", "torch_ms", "ratio",
                                                         "ratio_without_transfer", "host_us_per_node")}
                                 for r in data.get("results", [])], "failures": data.get("failures")}
memory = os.environ.get("GPU_CHECK_MEMORY_JSON")
if memory and os.path.exists(memory):
    res["memory"] = json.load(open(memory)).get("gpu")
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps({k: v for k, v in res.items() if k not in ("bench", "memory")}, indent=1))
EOF

echo "gpu-check: steps: ${RESULTS[*]}"
[ $FAILED -eq 0 ] && echo "gpu-check: all steps passed" || echo "gpu-check: SOME STEPS FAILED"
exit $FAILED
