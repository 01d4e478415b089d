#!/usr/bin/env bash
# The whole GPU check in one run: CuPy for the machine's CUDA, the GPU tests, the example on the
# GPU, and the training-step benchmark against PyTorch + cuDNN (TF32 off on both).
#
# Usage: benchmarks/gpu_check.sh [RESULTS_FOLDER]          (default: gpu-check)
#   PYTHON=...    the interpreter to use (default: python3)
#   WHEELS=DIR    install CuPy from wheels in DIR, offline (pip --no-index --find-links DIR)
#   STEP_LIMIT=S  stop the tests, the example or the benchmark after S seconds each (default 900)
#
# Every step runs even when an earlier one fails; the exit status is non-zero when any failed.
# The results folder gets six files: setup.txt (device, versions, kernel cache check),
# pytest-gpu.txt, example.txt, bench_gpu.txt, bench_gpu.md and summary.txt (each step's status).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)
PY=${PYTHON:-python3}
LIMIT=(timeout "${STEP_LIMIT:-900}")
SCRATCH=$(mktemp -d)  # the example's data and run folders: many files, kept out of RESULTS
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CUPY_CACHE_DIR="$SCRATCH/kernel_cache"
: >"$RESULTS/summary.txt"

# step NAME LOG COMMAND...: run COMMAND, its output to the screen and to LOG, its status to the summary.
step() {
    local name=$1 log=$2
    shift 2
    echo "=== $name: $*" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "$name: $([ "$status" -eq 0 ] && echo ok || echo "FAILED (exit $status)")" | tee -a "$RESULTS/summary.txt"
    return "$status"
}

SETUP="$RESULTS/setup.txt"
: >"$SETUP"

# 1. The device, and the highest CUDA version its driver supports ("CUDA Version: 13.0").
step nvidia-smi "$SETUP" nvidia-smi
CUDA_MAJOR=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -n 1)

# 2. CuPy: keep one that passes set_device("gpu") (which compiles and runs a probe kernel), else
#    install the wheel for the driver's CUDA with its CUDA libraries (the [ctk] extra).
GPU_READY=("$PY" -c "import tinyconv; tinyconv.set_device('gpu'); print('set_device(\"gpu\"): ok')")
if ! "${GPU_READY[@]}" >>"$SETUP" 2>&1; then
    if [ -z "$CUDA_MAJOR" ]; then
        echo "nvidia-smi shows no CUDA version: no NVIDIA GPU or driver here; stopping." | tee -a "$RESULTS/summary.txt"
        exit 1
    fi
    WHEEL="cupy-cuda${CUDA_MAJOR}x[ctk]>=14"
    if [ -n "${WHEELS:-}" ]; then
        step install-cupy "$SETUP" "$PY" -m pip install --no-index --find-links "$WHEELS" "$WHEEL"
    else
        step install-cupy "$SETUP" "$PY" -m pip install "$WHEEL"
    fi
fi
if ! step set-device-gpu "$SETUP" "${GPU_READY[@]}"; then
    echo "CuPy cannot use the GPU (see $SETUP): the GPU tests would only skip; stopping." \
        | tee -a "$RESULTS/summary.txt"
    exit 1
fi
step versions "$SETUP" "$PY" -c "
import sys, cupy, numpy, numba
print('python', sys.version.split()[0], '| numpy', numpy.__version__, '| numba', numba.__version__)
print('cupy', cupy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(),
      '| driver', cupy.cuda.runtime.driverGetVersion())
try:
    import torch
    print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())
except ImportError:
    print('torch: not installed')
"

# 3. The compiled-kernel cache: a second process must load the kernels from disk, writing nothing
#    (CuPy rewrites a cache file whenever it compiles again).
KERNEL_LOAD="import time; from tinyconv.kernels import gpu; start = time.perf_counter()
for name in ('im2col', 'col2im', 'maxpool_forward', 'maxpool_backward'):
    gpu._kernel(name, 'float32')
print(f'kernels ready in {time.perf_counter() - start:.3f} s')"
cache_files() { find "$CUPY_CACHE_DIR" -type f -printf '%P %s %T@\n' | sort; }
cache_unchanged() {
    [ -n "$CACHED" ] && [ "$CACHED" = "$(cache_files)" ] && echo "the second process loaded the kernels from the cache"
}
step kernel-cache-first "$SETUP" "$PY" -c "$KERNEL_LOAD"
CACHED=$(cache_files)
step kernel-cache-second "$SETUP" "$PY" -c "$KERNEL_LOAD"
step kernel-cache-reused "$SETUP" cache_unchanged

# 4. The GPU tests, the slow one past 2**31 elements included (it needs 16 GiB of free GPU memory).
step pytest-gpu "$RESULTS/pytest-gpu.txt" "${LIMIT[@]}" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider

# 5. The example on the GPU, short settings.
step example "$RESULTS/example.txt" "${LIMIT[@]}" "$PY" examples/train_cells.py --device gpu \
    --epochs 2 --n-samples 1000 --data-dir "$SCRATCH/cells" --out "$SCRATCH/runs"

# 6. The training step against PyTorch + cuDNN, batch 32 and 256.
step bench-gpu "$RESULTS/bench_gpu.txt" "${LIMIT[@]}" "$PY" benchmarks/bench_gpu.py --batches 32 256 --out "$RESULTS"

echo "=== summary"
cat "$RESULTS/summary.txt"
! grep -q FAILED "$RESULTS/summary.txt"
