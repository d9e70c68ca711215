"""PyTorch baseline: a SupCon training step, as users would otherwise run it.

    python benchmarks/torch_supcon_step.py --batch_size=1024 --steps=20 --json=torch.json
    python benchmarks/torch_supcon_step.py --model=small_cnn --image=28,28,1 \
        --space_to_depth=2 --batch_size=256 --dtype=float32 --optimizer=adamw \
        --compile_mode=default --json=torch_cpu.json     # hfashion's default model on CPU

Written for the comparison with `bench_train_step.py` (same model shape and
loss): CIFAR ResNet-18 (3x3 stem, no max-pool, widths 64-512), projection
head 512 -> 512 -> 128, SupCon (T = 0.1, T_base = 0.07) over two views of
each example, SGD with momentum and weight decay. Channels-last memory
format, bf16 autocast and `torch.compile` (mode ``max-autotune-no-cudagraphs``
by default) — the fast path of the PyTorch world. Random data of CIFAR's
shape are already on the device (no input pipeline, no augmentation), which
favours this baseline. Prints a table row and writes JSON: examples/s, step
ms (median after warm-up, ``torch.cuda.synchronize``), compile s, peak
memory and FLOPs per step (``torch.utils.flop_counter``, forward+backward).
``--model=small_cnn`` is hmlc_jax's small CNN (``hmlc_jax/models/small_cnn.py``:
three stages of 3x3 conv -> BN -> ReLU -> 2x2 max-pool, widths w, 2w, 4w,
optional space-to-depth stem, global average pool) with the same head; on CPU
use ``--dtype=float32`` (our CPU configs compute in float32).
Needs torch (not a dependency of hmlc_jax).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Sequential()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SupConResNet18(nn.Module):
  """CIFAR ResNet-18 encoder plus the two-layer projection head."""

  def __init__(self, width: int = 64, dim: int = 128):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                              nn.ReLU())
    layers, cin = [], width
    for stage, stride in enumerate((1, 2, 2, 2)):
      cout = width * 2 ** stage
      layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
      cin = cout
    self.layers = nn.Sequential(*layers)
    self.head = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(), nn.Linear(cin, dim))

  def forward(self, x):
    h = self.layers(self.stem(x)).mean(dim=(2, 3))
    return F.normalize(self.head(h).float(), dim=1)


class SupConSmallCNN(nn.Module):
  """hmlc_jax's SmallCNN (one conv per stage) plus the two-layer projection head."""

  def __init__(self, channels: int, width: int = 32, space_to_depth: int = 1, dim: int = 128):
    super().__init__()
    self.space_to_depth = space_to_depth
    layers, cin = [], channels * space_to_depth ** 2
    for stage in range(3):
      cout = width * 2 ** stage
      layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
      if stage or space_to_depth == 1:
        layers.append(nn.MaxPool2d(2))
      cin = cout
    self.layers = nn.Sequential(*layers)
    self.head = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(), nn.Linear(cin, dim))

  def forward(self, x):
    if self.space_to_depth > 1:
      x = F.pixel_unshuffle(x, self.space_to_depth)
    h = self.layers(x).mean(dim=(2, 3))
    return F.normalize(self.head(h).float(), dim=1)


def supcon_loss(z, labels, temperature: float = 0.1, base_temperature: float = 0.07):
  """SupCon over ``z`` [2B, D] (unit rows; rows i and i + B are views of example i)."""
  n = z.shape[0]
  logits = z @ z.T / temperature
  self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
  logits = logits.masked_fill(self_mask, float("-inf"))
  log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
  positives = (labels[:, None] == labels[None, :]) & ~self_mask
  mean_pos = (log_prob.masked_fill(~positives, 0.0).sum(1)
              / positives.sum(1).clamp(min=1))
  return -(temperature / base_temperature) * mean_pos.mean()


def make_step(model, optimizer, autocast: bool = True):
  def step(x, labels):
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=autocast):
      z = model(x)
    loss = supcon_loss(z, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss
  return step


def synchronize(device):
  if device.type == "cuda":
    torch.cuda.synchronize()


def count_flops(model, x, labels, autocast: bool = True) -> float | None:
  try:
    from torch.utils.flop_counter import FlopCounterMode
  except ImportError:
    return None
  counter = FlopCounterMode(display=False)
  with counter, torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                               enabled=autocast):
    supcon_loss(model(x), labels).backward()
  model.zero_grad(set_to_none=True)
  return float(counter.get_total_flops())


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch_size", type=int, default=1024, help="examples (2 views each)")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--compile_mode", default="max-autotune-no-cudagraphs",
                 help="torch.compile mode; 'none' for eager")
  p.add_argument("--json", default="torch_supcon_step.json")
  p.add_argument("--model", default="resnet18", choices=("resnet18", "small_cnn"))
  p.add_argument("--width", type=int, default=0, help="0: 64 (resnet18), 32 (small_cnn)")
  p.add_argument("--image", default="32,32,3", help="H,W,C")
  p.add_argument("--space_to_depth", type=int, default=1, help="small_cnn stem")
  p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                 help="bfloat16: autocast")
  p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
  args = p.parse_args(argv)
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
  h, w, c = (int(v) for v in args.image.split(","))
  if args.model == "resnet18":
    model = SupConResNet18(width=args.width or 64)
  else:
    model = SupConSmallCNN(c, width=args.width or 32, space_to_depth=args.space_to_depth)
  model = model.to(device).to(memory_format=torch.channels_last)
  if args.optimizer == "sgd":
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  else:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
  b = args.batch_size
  x = torch.randn(2 * b, c, h, w, device=device).to(memory_format=torch.channels_last)
  labels = torch.randint(0, 100, (b,), device=device).repeat(2)
  autocast = args.dtype == "bfloat16"
  flops = count_flops(model, x, labels, autocast)
  step = make_step(model, optimizer, autocast)
  if args.compile_mode != "none":
    step = torch.compile(step, mode=args.compile_mode)
  start = time.perf_counter()
  step(x, labels)
  synchronize(device)
  compile_s = time.perf_counter() - start
  for _ in range(args.warmup):
    step(x, labels)
  synchronize(device)
  if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    step(x, labels)
    synchronize(device)
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  result = dict(examples_per_sec=b / step_s, step_ms=1e3 * step_s, compile_s=compile_s,
                peak_memory_bytes=(torch.cuda.max_memory_allocated() if device.type == "cuda"
                                   else None),
                flops_per_step=flops, batch_size=b, device=(torch.cuda.get_device_name()
                                                            if device.type == "cuda" else "cpu"),
                torch=torch.__version__, compile_mode=args.compile_mode,
                model=args.model, image=args.image, dtype=args.dtype,
                threads=torch.get_num_threads(),
                step_ms_all=[1e3 * t for t in times], date=time.strftime("%Y-%m-%d"))
  print(f"| torch SupCon {args.model} ({args.compile_mode}) | {b} | "
        f"{result['examples_per_sec']:.1f} ex/s | {result['step_ms']:.1f} ms |")
  with open(args.json, "w") as f:
    json.dump({f"torch_supcon_{args.model}": result}, f, indent=2)


if __name__ == "__main__":
  main()
