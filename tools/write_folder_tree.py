"""Writes a built-in data set as a folder tree of PNG files: the layout that
``dataset.name=folder`` reads (docs/data.md), to see it or to test with.

    python tools/write_folder_tree.py --dataset=hfashion --out=/tmp/hfashion_tree
    python main.py --config=configs/folder_ghmlc.py --config.dataset.path=/tmp/hfashion_tree \\
        --config.dataset.channels=1 --config.dataset.image_size=28

``OUT/train/<level 0>/.../<leaf>/<index>.png`` and ``OUT/test/...``, one folder
level per label level, named by the data set's class names where it has them
(hfashion: ``clothes/tops/Shirt``), else ``<level name> <id>`` (hdigits:
``category 3/class 37``). ``--limit`` keeps the first N images of each split.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def folder_names(data):
  """Per level, the folder name of each class id."""
  names = []
  for h, count in enumerate(data.num_classes):
    if data.class_names:
      names.append([n.split("/")[-1] for n in data.class_names[h]])
    else:
      names.append([f"{data.level_names[h]} {i}" for i in range(count)])
  return [[n.replace("/", "-").replace(os.sep, "-") for n in level] for level in names]


def write_split(out, split, images, labels, names):
  from PIL import Image
  for index, (image, path) in enumerate(zip(images, labels)):
    folder = os.path.join(out, split, *(names[h][c] for h, c in enumerate(path)))
    os.makedirs(folder, exist_ok=True)
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    Image.fromarray(pixels).save(os.path.join(folder, f"{index:06d}.png"))


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", required=True, choices=("hdigits", "hfashion"))
  p.add_argument("--out", required=True)
  p.add_argument("--limit", type=int, default=0, help="images per split; 0: all")
  args = p.parse_args()
  from configs import common
  from hmlc_jax.data import load_dataset
  data = load_dataset(getattr(common, args.dataset)("supcon", "").dataset)
  names = folder_names(data)
  keep = slice(None, args.limit or None)
  write_split(args.out, "train", data.train_x[keep], data.train_y[keep], names)
  write_split(args.out, "test", data.test_x[keep], data.test_y[keep], names)
  print(f"wrote {args.dataset} to {args.out}: {len(data.train_x[keep])} train and "
        f"{len(data.test_x[keep])} test images, {data.num_levels} levels")


if __name__ == "__main__":
  main()
