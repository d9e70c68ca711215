"""Peak memory of a streamed run against the number of folder images.

    python benchmarks/stream_memory.py --counts=10000,100000 --json=stream_memory.json

For each count, writes that many random 32x32x3 PNG images as a folder tree
(2 -> 4 -> 8 classes) under ``--root`` (kept for reruns), then runs
``main.py --config=configs/folder_ghmlc.py`` on it for ``--steps`` steps,
streamed (``dataset.stream=True``) and, with ``--in_memory``, decoded at load,
each in a child process. Two peaks of its resident set: while it trains
(``/proc/PID/status`` read every 20 ms until the last step's checkpoint
appears: data, model, pipeline) and over the whole run (``/usr/bin/time -v``,
which includes the evaluation). Each count and mode runs ``--repeats``
times, interleaved; prints every run and the medians, and writes a JSON file.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hmlc_jax.cpu import cpu_model  # noqa: E402  pylint: disable=wrong-import-position


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


def rss_mb(pid: int) -> float:
  """Resident set of process ``pid`` in MB (0 when it is gone)."""
  try:
    with open(f"/proc/{pid}/status") as f:
      return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
  except (OSError, StopIteration):
    return 0.0


def peak_rss_mb(folder: str, stream: bool, steps: int, workdir: str) -> dict:
  command = ["/usr/bin/time", "-v", sys.executable, "main.py",
             "--config=configs/folder_ghmlc.py", f"--config.dataset.path={folder}",
             f"--config.dataset.stream={stream}", f"--config.num_train_steps={steps}",
             "--config.tensorboard=False", "--config.progress_bar=False",
             "--config.throughput=False", f"--workdir={workdir}", "--overwrite"]
  shutil.rmtree(workdir, ignore_errors=True)     # an old run's checkpoints would end the sampling
  start = time.perf_counter()
  proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  last_checkpoint = os.path.join(workdir, "checkpoints", str(steps))
  child, training_peak = None, 0.0
  while proc.poll() is None and not os.path.isdir(last_checkpoint):
    if child is None:          # the python process under /usr/bin/time
      try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
          child = int(f.read().split()[0])
      except (OSError, IndexError, ValueError):
        pass
    if child is not None:
      training_peak = max(training_peak, rss_mb(child))
    time.sleep(0.02)
  out, err = proc.communicate()
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(err[-3000:])
  if not training_peak:
    raise SystemExit(f"no sample of the training process's memory was taken ({workdir})")
  kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
  return {"training_peak_rss_mb": training_peak, "run_peak_rss_mb": kb / 1024,
          "wall_seconds": wall}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--counts", default="10000,100000")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--repeats", type=int, default=3,
                 help="runs of each count and mode, interleaved; the table shows medians")
  p.add_argument("--root", default="/tmp/hmlc_stream_memory")
  p.add_argument("--in_memory", action="store_true", help="also the decoded-at-load runs")
  p.add_argument("--json", default="")
  args = p.parse_args()
  counts = [int(c) for c in args.counts.split(",")]
  modes = ["stream", "memory"] if args.in_memory else ["stream"]
  folders = {count: write_tree(args.root, count) for count in counts}
  runs = {f"{count}/{mode}": [] for count in counts for mode in modes}
  print(f"{'repeat':>6} {'images':>8} {'mode':<8} {'training peak MB':>17} {'run peak MB':>12} "
        f"{'wall s':>8}")
  for repeat in range(args.repeats):
    for count in counts:
      for mode in modes:
        workdir = os.path.join(args.root, f"run_{count}_{mode}")
        run = peak_rss_mb(folders[count], mode == "stream", args.steps, workdir)
        runs[f"{count}/{mode}"].append(run)
        print(f"{repeat:>6} {count:>8} {mode:<8} {run['training_peak_rss_mb']:>17.1f} "
              f"{run['run_peak_rss_mb']:>12.1f} {run['wall_seconds']:>8.1f}", flush=True)
  median = {key: {field: float(np.median([r[field] for r in values])) for field in values[0]}
            for key, values in runs.items()}
  print("\nmedians")
  for key, run in median.items():
    print(f"{key:>16} {run['training_peak_rss_mb']:>17.1f} {run['run_peak_rss_mb']:>12.1f}")
  for mode in modes:
    low, high = (median[f"{count}/{mode}"]["run_peak_rss_mb"] for count in (counts[0], counts[-1]))
    print(f"{mode}: run peak at {counts[-1]:,} images - at {counts[0]:,}: {high - low:+.1f} MB")
  if args.json:
    report = {"command": "python benchmarks/stream_memory.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d"), "machine": cpu_model(), "median": median,
              "runs": runs}
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
