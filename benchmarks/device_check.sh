#!/usr/bin/env bash
# The accelerator checks in one command, for a machine with one NVIDIA GPU:
#
#   bash benchmarks/device_check.sh [OUT_DIR]       # default: $OUT, else benchmarks/results/device
#
# 1. Every method's training step (CIFAR ResNet-18, bfloat16, global batch 1024):
#    examples/s, step time, compile time, peak memory, MFU against the GPU's dense
#    bf16 peak; G-HMLC's cost over SupCon is the GMM's overhead.
# 2. Each loss and its gradient at the GPU's default matmul precision (TF32)
#    against precision=HIGHEST, both against a float64 reference.
# 3. The PyTorch SupCon step on the same ResNet-18 (bf16 autocast, torch.compile).
#
# The machine's Python needs jax with CUDA, flax, optax, orbax-checkpoint and
# torch. ml_collections and tqdm (pure Python, no dependencies of their own that
# flax and orbax do not bring) are installed from benchmarks/device_wheels/ when
# missing; make that folder on a machine with the package index and carry it:
#   pip download --no-deps --only-binary=:all: -d benchmarks/device_wheels ml_collections tqdm
# Nothing imports TensorFlow, tensorflow-datasets or clu (random data of CIFAR's
# shape, no TensorBoard). Each part has its own time limit; the three together
# stay under 8 minutes, and a part that fails does not stop the others.
set -uo pipefail
out=${1:-${OUT:-benchmarks/results/device}}
mkdir -p "$out"
cd "$(dirname "$0")/.."
if ! python -c "import ml_collections, tqdm" 2>/dev/null; then
  python -m pip install --quiet --no-index --no-deps benchmarks/device_wheels/*.whl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/device.txt" 2>&1
python -c "import jax; print(jax.__version__, jax.devices())" | tee -a "$out/device.txt"
status=0
timeout 270 python benchmarks/bench_train_step.py --batch_size=1024 --steps=20 --warmup=5 \
  --configs=configs/cifar100_supcon.py,configs/cifar100_hmce.py,configs/cifar100_ghmlc.py,configs/cifar100_ahmlc.py \
  --json="$out/bench_train_step_gpu.json" 2>&1 | tee "$out/bench_train_step_gpu.log" || status=1
timeout 60 python benchmarks/precision_check.py --json="$out/precision_gpu.json" 2>&1 \
  | tee "$out/precision_gpu.log" || status=1
timeout 120 python benchmarks/torch_supcon_step.py --batch_size=1024 --steps=20 --warmup=5 \
  --compile_mode=default --json="$out/torch_supcon_step_gpu.json" 2>&1 \
  | tee "$out/torch_supcon_step_gpu.log" || status=1
exit $status
