#!/usr/bin/env bash
# The test suite against a core built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   bash tools/run_sanitized.sh [pytest args]      (from the repository root, in a venv with the
#                                                   test dependencies and pybind11 installed)
# The package is staged in build/asan/pkg with the sanitized extension; the sanitizer runtimes are
# preloaded into Python. Leak checking is off (CPython keeps memory until exit by design); any
# other report aborts the run. Left out: the fuzz tests (atheris's own instrumentation does not mix
# with a preloaded ASan runtime) and the two peak-memory tests (ASan holds freed memory in
# quarantine and pads every block, so resident memory is not the program's own). The CUDA
# backend is left out of this build: there is no GPU here to run it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/asan -G Ninja -DR1LITE_SANITIZE=ON -DR1LITE_CUDA=OFF -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > /dev/null
ninja -C build/asan
rm -rf build/asan/pkg && mkdir -p build/asan/pkg
cp -r python/r1lite build/asan/pkg/
rm -f build/asan/pkg/r1lite/_core*.so
cp build/asan/_core*.so build/asan/pkg/r1lite/
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PYTHONPATH=build/asan/pkg:tests python -m pytest -q tests --deselect tests/test_fuzz.py \
  --deselect tests/test_convert_memory.py::test_converting_a_sharded_fp8_checkpoint_stays_bounded \
  --deselect tests/test_robustness.py::test_peak_memory_of_a_1_5b_q8_0_model "$@"
