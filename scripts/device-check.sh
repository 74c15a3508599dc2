#!/usr/bin/env bash
# device-check.sh: the GPU machine's check, one run: on a machine with a pip `torch` (and no Debian
# packages) builds ssn against the LibTorch inside that wheel, with image I/O from the static ITK
# of .device-deps/itk-static.tar.gz; runs the test suite (CUDA tests included), the end-to-end job
# on the GPU (scripts/gpu-end-to-end.sh) and `ssn benchmark train --device cuda` next to the
# PyTorch baseline on the same GPU (bench/run_train.sh). .device-deps/ is made on the development
# machine by scripts/stage-offline-deps.sh (headers, googletest sources, ITK).
# Order: build, the benchmark on the quiet machine, then the end-to-end job with the test suite in
# the background. Results go to $OUT (or ./device-out). SSN_DEVICE_STAGES picks stages
# (default "tests e2e bench").
set -u
out=${OUT:-device-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
deps=$PWD/.device-deps
python=${PYTHON:-python3}
stages=${SSN_DEVICE_STAGES:-tests e2e bench}
begin=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - begin )) s]"; }

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

itk=(-DSSN_WITH_ITK=OFF)
if [ -f "$deps/itk-static.tar.gz" ]; then
  rm -rf /tmp/ssn-itk && mkdir -p /tmp/ssn-itk && tar -xzf "$deps/itk-static.tar.gz" -C /tmp/ssn-itk
  itk=(-DSSN_WITH_ITK=ON "-DITK_DIR=$(ls -d /tmp/ssn-itk/lib/cmake/ITK-*)")
fi
echo "image I/O: ${itk[*]}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

configure() {
  cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" "${itk[@]}" -DSSN_WITH_HDF5=OFF \
    -DSSN_WITH_DISTRIBUTED=$dist -DSSN_DEPS_DIR="$deps" -DSSN_BUILD_BENCHMARKS=OFF "$@" \
    >> "$out/configure.log" 2>&1
}
echo "== build $(elapsed)"
if ! configure; then
  tail -40 "$out/configure.log"
  exit 1
fi
start=$(date +%s)
if ! cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1; then
  grep -E -A5 "error" "$out/build.log" | head -60
  # The CUDA allocator statistics are the one part that includes c10_cuda's headers.
  echo "retrying with -DSSN_CUDA_MEMORY_STATS=OFF"
  configure -DSSN_CUDA_MEMORY_STATS=OFF && cmake --build build-gpu -j "$(nproc)" >> "$out/build.log" 2>&1 || {
    grep -E -A5 "error" "$out/build.log" | tail -40
    exit 1
  }
fi
grep -E "SSN_CUDA_MEMORY_STATS|SSN_WITH_ITK" build-gpu/CMakeCache.txt | grep -v HELPSTRING
echo "built in $(( $(date +%s) - start )) s; warnings: $(grep -c 'warning:' "$out/build.log")"
ldd build-gpu/ssn | grep -ci itk | sed 's/^/shared ITK libraries linked: /'
# The wheel's copies of std::filesystem (pytorch/pytorch#133437) and ssn's link order against them.
torch_lib=$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
for lib in libtorch.so libtorch_cpu.so libtorch_cuda.so; do
  [ -f "$torch_lib/$lib" ] && echo "$lib exports $(nm -D --defined-only "$torch_lib/$lib" | grep -c 'St10filesystem') std::filesystem symbols"
done
readelf -d build-gpu/ssn | grep -m1 NEEDED | sed 's/^ */ssn: first needed library: /'
build-gpu/tests/ssn_link_order_check && echo "link order check: passed"
build-gpu/tests/ssn_tests --gtest_brief=1 \
  --gtest_filter='LabelImage.PngRoundTripKeepsValuesAndOrientation:Trainer.TrainPredictEvaluateOnAHandMadeFolder' 2>&1 | tail -3

if [[ " $stages " == *" bench "* ]]; then  # first, on a quiet machine
  echo "== ssn benchmark train --device cuda next to PyTorch $(elapsed)"
  SSN_BENCH_DEVICE=cuda SSN_BENCH_ROUNDS=1 SSN_BENCH_STEPS=${SSN_BENCH_STEPS:-10} \
    SSN_BENCH_WARMUP=${SSN_BENCH_WARMUP:-3} SSN_BENCH_BRATS_BATCH=${SSN_BENCH_BRATS_BATCH:-10} \
    SSN_BENCH_PHASES=${SSN_BENCH_PHASES:-1} \
    SSN_PYTHON="$python" timeout 280 bash bench/run_train.sh build-gpu 2>&1 | tee "$out/bench_train.txt"
fi

ctest_pid=
if [[ " $stages " == *" tests "* ]]; then
  echo "== tests (in the background) $(elapsed)"
  (cd build-gpu && timeout 250 ctest -j 8 --timeout 100 --output-on-failure > "$out/ctest.log" 2>&1
   echo "ctest exit $?" >> "$out/ctest.log") &
  ctest_pid=$!
fi

if [[ " $stages " == *" e2e "* ]]; then
  echo "== end to end on cuda $(elapsed)"
  rm -rf /tmp/ssn-e2e
  SSN_PYTHON="$python" timeout 260 bash scripts/gpu-end-to-end.sh build-gpu/ssn /tmp/ssn-e2e cuda \
    2>&1 | tee "$out/e2e.log"
  (cd /tmp/ssn-e2e && tar -czf "$out/e2e-results.tar.gz" --exclude='*.pt' --exclude=data \
    --exclude=samples --exclude=samples_cpu --exclude=predictions . 2>/dev/null)
fi

if [ -n "$ctest_pid" ]; then
  wait "$ctest_pid"
  echo "== tests done $(elapsed)"
  grep -E "tests passed|tests failed|ctest exit|\(Failed\)|\(Timeout\)|\(SEGFAULT\)|Not Run" "$out/ctest.log" | head -40
  grep -E "Cuda" "$out/ctest.log" | head -20
fi

echo "== done $(elapsed)"
