#!/usr/bin/env bash
# One prepared run on a lent GPU machine (CUDA image: nvcc, cmake, ninja, pybind11, numpy,
# safetensors, tokenizers, pytest in python3): build the extension with the CUDA backend, run the
# CUDA tests (with one pass under compute-sanitizer), then the speed table. Sized for well under
# 8 minutes; each step has its own time limit (560 s in all, under one device call's 600) and
# the script goes on after a failing step.
# Logs go to $OUT (or ./device-check-logs) as well as stdout.
#
#   bash tools/device_check.sh            # from the repository root
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS="${OUT:-device-check-logs}"
mkdir -p "$LOGS"
PY="${PYTHON:-python3}"
status=0
step() {  # step NAME SECONDS COMMAND...
  local name="$1" limit="$2"; shift 2
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$LOGS/gpu.txt"
step build 150 bash -c "cmake -S . -B build/device -G Ninja -DR1LITE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -Dpybind11_DIR=\$($PY -m pybind11 --cmakedir) -DPython_EXECUTABLE=\$(command -v $PY) >/dev/null \
  && ninja -C build/device && cp build/device/_core*.so python/r1lite/"
export PYTHONPATH="$PWD/python:$PWD/tests"
step tests 150 "$PY" -m pytest -q -rs tests/test_cuda.py
step memcheck 80 compute-sanitizer --tool memcheck --error-exitcode 9 \
  "$PY" -m pytest -q tests/test_cuda.py -k "deepseek_v3_f32 or qwen2_f32" -p no:cacheprovider
step bench 180 "$PY" tools/bench_cuda.py --repeats 3
exit $status
