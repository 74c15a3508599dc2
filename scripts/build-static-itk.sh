#!/usr/bin/env bash
# build-static-itk.sh SRC PREFIX: builds the few ITK modules ssn reads and writes images with
# (ITKIOPNG, ITKIONIFTI, ITKIONRRD, ITKIOMeta and what they need: ITKCommon, VNL, zlib, libpng,
# niftilib, NrrdIO, MetaIO), as static libraries with ITK's own copies of the codec libraries, and
# installs them in PREFIX. A machine without ITK packages (the GPU machine, whose LibTorch is a pip
# wheel's) then builds ssn with -DITK_DIR=PREFIX/lib/cmake/ITK-<version>: the libraries are linked
# into ssn, so nothing but PREFIX travels. SRC is an ITK source tree, e.g.
#   git clone --depth 1 -b v5.4.7 https://github.com/InsightSoftwareConsortium/ITK SRC
# About 930 compilations: under 5 minutes on 2 cores (measured 2026-11-28).
set -euo pipefail
src=${1:?usage: build-static-itk.sh ITK_SOURCE_DIR PREFIX}
prefix=${2:?usage: build-static-itk.sh ITK_SOURCE_DIR PREFIX}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
# ITKGroup_Core is on by default and would pull in GDCM, the mesh readers and the test kernel.
cmake -S "$src" -B "$build" "${generator[@]}" "${launcher[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DBUILD_TESTING=OFF -DBUILD_EXAMPLES=OFF -DITK_WRAP_PYTHON=OFF \
  -DITK_BUILD_DEFAULT_MODULES=OFF -DITKGroup_Core=OFF \
  -DModule_ITKIOPNG=ON -DModule_ITKIONIFTI=ON -DModule_ITKIONRRD=ON -DModule_ITKIOMeta=ON \
  -DCMAKE_INSTALL_PREFIX="$prefix"
cmake --build "$build" -j "$(nproc)"
cmake --install "$build"
echo "ITK installed in $prefix: configure ssn with -DITK_DIR=$(ls -d "$prefix"/lib/cmake/ITK-*)"
