"""How fast the training input pipeline alone delivers batches (no model, no device).

    python benchmarks/bench_input_pipeline.py --config=configs/hfashion_ghmlc.py \\
        --path=/tmp/hfashion_tree --image_size=28 --channels=1 --threads=1,2

Reads a folder data set (``tools/write_folder_tree.py`` writes hdigits and
hfashion as trees) and times `pipeline.train_batches` over ``--batches``
global batches of the config's size: in memory (decoded at load, each batch
gathered) and streamed with each thread count (each batch's images decoded
from their files). Variants take turns within each round after one warm-up
batch; reported: the median over rounds of images per second. Prints a table
and writes a JSON file.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hmlc_jax.cpu import cpu_model  # noqa: E402  pylint: disable=wrong-import-position
from hmlc_jax.data import load_dataset  # noqa: E402  pylint: disable=wrong-import-position
from hmlc_jax.data.pipeline import train_batches  # noqa: E402  pylint: disable=wrong-import-position
from hmlc_jax.sweeps import config_from_file  # noqa: E402  pylint: disable=wrong-import-position


def images_per_second(data, config, batches: int, start: int) -> float:
  """Images/s of ``batches`` batches from step ``start`` (after one untimed batch)."""
  stream = train_batches(data, config, start, start + batches + 1)
  next(stream)
  began, count = time.perf_counter(), 0
  for batch in stream:
    count += batch["x"].shape[0] * batch["x"].shape[1]
  return count / (time.perf_counter() - began)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="configs/hfashion_ghmlc.py")
  p.add_argument("--path", required=True, help="a folder tree (tools/write_folder_tree.py)")
  p.add_argument("--image_size", type=int, default=28)
  p.add_argument("--channels", type=int, default=1)
  p.add_argument("--threads", default="1,2", help="decoding threads of the streamed variants")
  p.add_argument("--batches", type=int, default=40, help="timed batches per variant and round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--json", default="bench_input_pipeline.json")
  args = p.parse_args(argv)
  config = config_from_file(args.config)
  with config.unlocked():
    config.dataset.update(name="folder", path=args.path, image_size=args.image_size,
                          channels=args.channels)
  variants = {"in memory": (False, 1)}
  variants.update({f"streamed, {t} thread{'s' * (t > 1)}": (True, t)
                   for t in map(int, args.threads.split(","))})
  datasets = {}
  for stream in (False, True):
    with config.unlocked():
      config.dataset.stream = stream
    began = time.perf_counter()
    datasets[stream] = load_dataset(config.dataset)
    print(f"load ({'streamed' if stream else 'in memory'}): "
          f"{time.perf_counter() - began:.1f} s", flush=True)
  rates = {name: [] for name in variants}
  for r in range(args.rounds):
    for name, (stream, threads) in variants.items():
      with config.unlocked():
        config.dataset.update(stream=stream, stream_threads=threads)
      start = r * (args.batches + 1)          # fresh files each round: no warm cache of a batch
      rates[name].append(images_per_second(datasets[stream], config, args.batches, start))
  report = {"command": "python benchmarks/bench_input_pipeline.py " + " ".join(argv or sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "machine": cpu_model(),
            "cores": os.cpu_count(), "batch_size": config.batch_size, "batches": args.batches,
            "rounds": args.rounds, "images_per_second": {}}
  print(f"{'variant':<22} {'images/s (median)':>18} {'per round':>30}")
  for name, values in rates.items():
    median = statistics.median(values)
    report["images_per_second"][name] = {"median": median, "rounds": values}
    print(f"{name:<22} {median:>18.0f} {' '.join(f'{v:.0f}' for v in values):>30}")
  with open(args.json, "w") as f:
    json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
