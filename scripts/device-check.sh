#!/usr/bin/env bash
# device-check.sh: on a GPU machine with a pip `torch` (and no Debian packages), builds ssn against
# the LibTorch inside that wheel and runs the whole test suite, CUDA tests included, then the micro
# benchmarks on the GPU and the CPU against PyTorch. Needs .device-deps/ made by
# scripts/stage-offline-deps.sh (headers, googletest sources) and, for the golden tests, a copy of
# the golden folder in .device-deps/golden. Results go to $OUT (or ./device-out).
set -u
out=${OUT:-device-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
deps=$PWD/.device-deps
python=${PYTHON:-python3}

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc)"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11 abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
cmake --version | head -1
g++ --version | head -1
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')

# Data-parallel training needs the Gloo headers, which a pip torch may or may not carry.
dist=OFF
if [ -f "$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')/include/gloo/context.h" ]; then dist=ON; fi
echo "gloo headers (SSN_WITH_DISTRIBUTED): $dist"

bench=OFF
if ls /usr/lib/*/cmake/benchmark /usr/local/lib/cmake/benchmark >/dev/null 2>&1; then bench=ON; fi
echo "google benchmark: $bench"

echo "== configure"
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
    -DSSN_WITH_ITK=OFF -DSSN_WITH_HDF5=OFF -DSSN_WITH_DISTRIBUTED=$dist -DSSN_DEPS_DIR="$deps" \
    -DSSN_BUILD_BENCHMARKS=$bench \
    > "$out/configure.log" 2>&1; then
  tail -40 "$out/configure.log"
  exit 1
fi
echo "== build"
start=$(date +%s)
if ! cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1; then
  grep -E -A5 "error" "$out/build.log" | head -80
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s; warnings: $(grep -c 'warning:' "$out/build.log")"

echo "== tests"
export SSN_GOLDEN_DIR=$deps/golden
./build-gpu/tests/ssn_tests --gtest_output=json:"$out/tests.json" > "$out/tests.log" 2>&1
echo "ssn_tests exit $?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[       OK \] Cuda|FAILED|Failure" "$out/tests.log" | head -40
(cd build-gpu && ctest -j 8 --output-on-failure > "$out/ctest.log" 2>&1; echo "ctest exit $?")
tail -5 "$out/ctest.log"

if [ "$bench" = ON ]; then
  echo "== micro benchmarks, cuda"
  SSN_BENCH_DEVICE=cuda SSN_BENCH_THREADS=$(nproc) SSN_PYTHON="$python" \
    timeout 120 bash bench/run_micro.sh build-gpu 2> "$out/bench_cuda.err"
  echo "== micro benchmarks, cpu"
  SSN_BENCH_DEVICE=cpu SSN_BENCH_THREADS=$(nproc) SSN_PYTHON="$python" \
    timeout 150 bash bench/run_micro.sh build-gpu 2> "$out/bench_cpu.err"
fi
