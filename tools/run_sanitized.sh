#!/usr/bin/env bash
# The test suite against a core built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   bash tools/run_sanitized.sh [pytest args]      (from the repository root, in a venv with the
#                                                   test dependencies and pybind11 installed)
# The package is staged in build/asan/pkg with the sanitized extension; the sanitizer runtimes are
# preloaded into Python. Leak checking is off (CPython keeps memory until exit by design); any
# other report aborts the run. The fuzz tests are left out: they run atheris, whose own
# instrumentation does not mix with a preloaded ASan runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/asan -G Ninja -DR1LITE_SANITIZE=ON -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" > /dev/null
ninja -C build/asan
rm -rf build/asan/pkg && mkdir -p build/asan/pkg
cp -r python/r1lite build/asan/pkg/
rm -f build/asan/pkg/r1lite/_core*.so
cp build/asan/_core*.so build/asan/pkg/r1lite/
export LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
PYTHONPATH=build/asan/pkg:tests python -m pytest -q tests --deselect tests/test_fuzz.py "$@"
