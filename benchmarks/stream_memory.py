"""Peak memory of a streamed run against the number of folder images.

    python benchmarks/stream_memory.py --counts=10000,100000 --json=stream_memory.json

For each count, writes that many random 32x32x3 PNG images as a folder tree
(2 -> 4 -> 8 classes) under ``--root`` (kept for reruns), then runs
``main.py --config=configs/folder_ghmlc.py`` on it for ``--steps`` steps,
streamed (``dataset.stream=True``) and, with ``--in_memory``, decoded at load,
each in a child process measured with ``/usr/bin/time -v`` (its peak resident
set size). Prints a table and writes a JSON file.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_tree(root: str, count: int, seed: int = 0) -> str:
  """``count`` random 32x32x3 PNGs, ``root/train/<a>/<b>/<c>/i.png`` and a 10% test split."""
  from PIL import Image
  folder = os.path.join(root, str(count))
  if os.path.exists(os.path.join(folder, "done")):
    return folder
  rng = np.random.default_rng(seed)
  for i in range(count):
    split = "test" if i % 10 == 0 else "train"
    leaf = i % 8
    path = os.path.join(folder, split, f"a{leaf // 4}", f"b{leaf // 2}", f"c{leaf}")
    os.makedirs(path, exist_ok=True)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(path, f"{i:07d}.png"), compress_level=1)
  open(os.path.join(folder, "done"), "w").close()
  return folder


def peak_rss_mb(folder: str, stream: bool, steps: int, workdir: str) -> dict:
  command = ["/usr/bin/time", "-v", sys.executable, "main.py",
             "--config=configs/folder_ghmlc.py", f"--config.dataset.path={folder}",
             f"--config.dataset.stream={stream}", f"--config.num_train_steps={steps}",
             "--config.tensorboard=False", "--config.progress_bar=False",
             "--config.throughput=False", f"--workdir={workdir}", "--overwrite"]
  start = time.perf_counter()
  out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  wall = time.perf_counter() - start
  if out.returncode != 0:
    raise SystemExit(out.stderr[-3000:])
  kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
  return {"peak_rss_mb": kb / 1024, "wall_seconds": wall}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--counts", default="10000,100000")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--root", default="/tmp/hmlc_stream_memory")
  p.add_argument("--in_memory", action="store_true", help="also the decoded-at-load runs")
  p.add_argument("--json", default="")
  args = p.parse_args()
  report = {"command": "python benchmarks/stream_memory.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "runs": {}}
  print(f"{'images':>8} {'mode':<10} {'peak RSS MB':>12} {'wall s':>8}")
  for count in map(int, args.counts.split(",")):
    folder = write_tree(args.root, count)
    for stream in ([True, False] if args.in_memory else [True]):
      mode = "stream" if stream else "memory"
      workdir = os.path.join(args.root, f"run_{count}_{mode}")
      run = peak_rss_mb(folder, stream, args.steps, workdir)
      report["runs"][f"{count}/{mode}"] = run
      print(f"{count:>8} {mode:<10} {run['peak_rss_mb']:>12.1f} {run['wall_seconds']:>8.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
