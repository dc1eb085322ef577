#!/usr/bin/env bash
# The fedsim tests' data: Fashion-MNIST as an HDF5 image set in DIR (made
# once, locked so concurrent tests wait), from Debian's dataset-fashion-mnist;
# exit 77 (SKIP) with a message where the package is missing.
# Usage: fixture.sh DIR (TURBINE_BUILD_ROOT from the environment); prints the .h5 path.
set -euo pipefail
work=${1:?fixture.sh DIR}
build=${TURBINE_BUILD_ROOT:?}
images=/usr/share/datasets/fashion-mnist
if [[ ! -f $images/train-images-idx3-ubyte.gz ]]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed (tools/setup installs it)" >&2
  exit 77
fi
mkdir -p "$work"
data=$work/fashion-mnist.h5
(
  flock 9
  [[ -f $data ]] || "$build/apps/prepare-data" --images fashion-mnist -o "$data" > "$work/prepare.log" 2>&1 ||
    { cat "$work/prepare.log" >&2; exit 1; }
) 9>"$work/.lock"
echo "$data"
