#!/usr/bin/env bash
# The GPU comparison of issue 6 in one command (run from the repository root on a
# CUDA machine with hmlc_jax's requirements and torch installed):
#   bash benchmarks/gpu_resnet18.sh [OUT_DIR]
# Ours: CIFAR ResNet-18, bf16 compute, global batch 1024, each method side by side;
# then the PyTorch SupCon baseline (channels-last, bf16 autocast, torch.compile).
set -euo pipefail
out=${1:-benchmarks/results}
mkdir -p "$out"
python benchmarks/bench_train_step.py --batch_size=1024 --steps=20 --warmup=5 \
  --configs=configs/cifar100_supcon.py,configs/cifar100_hmce.py,configs/cifar100_ghmlc.py,configs/cifar100_ahmlc.py \
  --json="$out/bench_train_step_gpu.json"
python benchmarks/torch_supcon_step.py --batch_size=1024 --steps=20 --warmup=5 \
  --json="$out/torch_supcon_step_gpu.json"
