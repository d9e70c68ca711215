"""Folder data sets (hmlc_jax/data/folder.py): the nesting is the label tree, the
iNaturalist 2021 taxonomy-name layout, CSV tables, a user's own loader, and one
line naming the problem for every kind of bad folder."""
import os

import numpy as np
import pytest
from PIL import Image

from hmlc_jax.data import load_dataset
from hmlc_jax.errors import UserInputError
from tests.fixtures import section

# (level 0, level 1, leaf) -> grey value of its images: every class looks different.
TREE = {("animals", "birds", "owl"): 20, ("animals", "birds", "robin"): 60,
        ("animals", "fish", "trout"): 100, ("plants", "trees", "oak"): 140,
        ("plants", "trees", "other"): 180, ("plants", "herbs", "other"): 220}


def write_image(path, value, size=(12, 10), mode="RGB"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.full(size[::-1] + ((3,) if mode == "RGB" else ()), value, np.uint8)
  Image.fromarray(pixels, mode).save(path)


def write_tree(root, splits=("train", "test"), per_leaf=3):
  for split in splits:
    for parts, value in TREE.items():
      for i in range(per_leaf):
        write_image(os.path.join(root, split, *parts, f"{i}.png"), value)
  # Ignored: hidden files and folders, files that are no image.
  open(os.path.join(root, "train", "animals", "notes.txt"), "w").close()
  write_image(os.path.join(root, "train", "animals", "birds", "owl", ".hidden.png"), 0)
  write_image(os.path.join(root, "train", ".cache", "x", "y", "z.png"), 0)
  return str(root)


def folder_config(root, **fields):
  return section("dataset", **{"name": "folder", "path": str(root), "image_size": 8, **fields})


def test_the_nesting_is_the_label_tree(tmp_path):
  data = load_dataset(folder_config(write_tree(tmp_path), channels=1))
  assert data.num_classes == (2, 4, 6) and data.num_levels == 3
  assert data.train_x.shape == (18, 8, 8, 1) and data.test_x.shape == (18, 8, 8, 1)
  assert data.class_names[0] == ("animals", "plants")
  assert data.class_names[2][-1] == "plants/trees/other"     # "other" twice: two classes
  for x, y in zip(data.train_x, data.train_y):
    path = tuple(data.class_names[2][y[2]].split("/"))
    assert np.all(x == TREE[path])                             # the right pixels per label
    assert data.class_names[0][y[0]] == path[0]
    assert data.class_names[1][y[1]] == "/".join(path[:2])


def test_rgb_resize_and_a_held_out_test_split(tmp_path):
  root = write_tree(tmp_path, splits=("train",), per_leaf=10)
  data = load_dataset(folder_config(root, channels=3, test_fraction=0.2, image_size=5))
  assert data.train_x.shape == (48, 5, 5, 3) and data.test_x.shape == (12, 5, 5, 3)
  assert sorted(np.bincount(data.test_y[:, 2])) == [2] * 6    # stratified by leaf
  again = load_dataset(folder_config(root, channels=3, test_fraction=0.2, image_size=5))
  np.testing.assert_array_equal(again.test_y, data.test_y)    # seeded


def test_inaturalist_taxonomy_names(tmp_path):
  """Seven names after the numeric id; a species epithet keeps its underscores."""
  species = ["00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris",
             "00001_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_rubellus",
             "00002_Plantae_Tracheophyta_Magnoliopsida_Fagales_Fagaceae_Quercus_robur_x_petraea"]
  for split in ("train_mini", "val"):
    for i, name in enumerate(species):
      write_image(os.path.join(tmp_path, split, name, "a.jpg"), 50 * i)
  config = folder_config(tmp_path, layout="taxonomy_names", train_split="train_mini",
                         test_split="val")
  data = load_dataset(config)
  assert data.num_levels == 7 and data.num_classes == (2, 2, 2, 2, 2, 2, 3)
  assert data.class_names[6][-1] == ("Plantae/Tracheophyta/Magnoliopsida/Fagales/Fagaceae/"
                                     "Quercus/robur_x_petraea")
  np.testing.assert_array_equal(data.train_y[:, 5], [0, 0, 1])   # one genus, then another


def test_csv_taxonomy(tmp_path):
  for i, value in enumerate((10, 90, 170)):
    write_image(os.path.join(tmp_path, "images", f"{i}.png"), value)
  rows = ["file,kingdom,genus", "images/0.png,A,a1", "images/1.png,A,a2", "images/2.png,B,b1"]
  for split in ("train", "test"):
    (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
  data = load_dataset(folder_config(tmp_path, layout="csv"))
  np.testing.assert_array_equal(data.train_y, [[0, 0], [0, 1], [1, 2]])
  assert data.class_names[1] == ("A/a1", "A/a2", "B/b1")


def my_loader(config):
  """A user's own loader (used through dataset.name='tests.test_data_folder:my_loader')."""
  from hmlc_jax.data import Dataset
  x = np.zeros((4, 8, 8, 1), np.uint8)
  y = np.array([[0, 0], [0, 1], [1, 2], [1, 3]], np.int32)
  return Dataset(name="mine", kind="image", train_x=x, train_y=y, test_x=x, test_y=y,
                 num_classes=(2, 4), level_names=("coarse", "fine"))


def test_a_loader_of_ones_own_by_module_path():
  data = load_dataset(section("dataset", name="tests.test_data_folder:my_loader"))
  assert data.name == "mine" and data.num_classes == (2, 4)
  with pytest.raises(UserInputError, match="has no function 'nothing'"):
    load_dataset(section("dataset", name="tests.test_data_folder:nothing"))
  with pytest.raises(UserInputError, match="cannot import no_such_module"):
    load_dataset(section("dataset", name="no_such_module:load"))


def break_two_depths(root):
  write_image(os.path.join(root, "train", "plants", "moss", "0.png"), 1)


def break_empty_leaf(root):
  os.makedirs(os.path.join(root, "train", "plants", "trees", "elm"))


def break_truncated_image(root):
  path = os.path.join(root, "train", "animals", "fish", "trout", "1.png")
  with open(path, "rb") as f:
    head = f.read(30)
  with open(path, "wb") as f:
    f.write(head)


def break_truncated_jpeg(root):
  """A JPEG cut in half: OpenCV would decode it with grey fill; the loader refuses it."""
  path = os.path.join(root, "train", "animals", "fish", "trout", "2.jpg")
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(path)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    (break_two_depths, "not a tree: .*plants/moss holds images at depth 2"),
    (break_empty_leaf, "empty class folder .*plants/trees/elm"),
    (break_truncated_image, "cannot read image .*trout/1.png"),
    (break_truncated_jpeg, "cannot read image .*trout/2.jpg: cut short"),
])
def test_bad_folders_are_named(tmp_path, damage, message):
  root = write_tree(tmp_path)
  damage(root)
  with pytest.raises(UserInputError, match=message):
    load_dataset(folder_config(root))


def test_bad_taxonomy_folder_and_csv_row_are_named(tmp_path):
  write_image(os.path.join(tmp_path, "train", "00000_Animalia_Annelida", "a.jpg"), 1)
  with pytest.raises(UserInputError, match="has 2 names after '00000'"):
    load_dataset(folder_config(tmp_path, layout="taxonomy_names"))
  (tmp_path / "train.csv").write_text("file,a,b\nmissing.png,A,a1\n")
  with pytest.raises(UserInputError, match="train.csv line 2: no such file .*missing.png"):
    load_dataset(folder_config(tmp_path, layout="csv"))


def write_inaturalist_like(root, per_species=2):
  """A synthetic tree in iNaturalist 2021's official layout: 7 levels, 8 species."""
  for split in ("train_mini", "val"):
    for s in range(8):
      path = ["Animalia" if s < 4 else "Plantae", f"P{s // 4}", f"C{s // 2}", f"O{s // 2}",
              f"F{s // 2}", f"G{s}", f"species_{s}"]
      for i in range(per_species):
        write_image(os.path.join(root, split, f"{s:05d}_" + "_".join(path), f"{i}.jpg"),
                    30 * s + i)
  return str(root)


def test_inat2021_smoke_config_builds_its_model_on_the_official_layout(tmp_path):
  """configs/inat2021_ghmlc.py:smoke on a synthetic 7-level tree: the loader, the
  ResNet-50 on its images and G-HMLC's 7 levels (shapes only; the image
  family's whole runs are hdigits' and hfashion's)."""
  from tests.smoke import build_on_data, smoke_config
  config = smoke_config("inat2021_ghmlc", **{"dataset.path": write_inaturalist_like(tmp_path)})
  assert config.model.backbone == "resnet50" and config.dataset.layout == "taxonomy_names"
  data = load_dataset(config.dataset)
  assert data.num_levels == 7 and data.num_classes == (2, 2, 4, 4, 4, 8, 8)
  sample, out = build_on_data(config)
  assert sample.shape == (2, 32, 32, 3) and out["embedding"].shape == (2, 16)
