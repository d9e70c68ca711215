"""The documentation stays true: the README's results come from the JSON files
it links, every relative link resolves, every config, flag, config field and
module the docs name exists, the README stays short, and no docstring or
comment carries a dated measurement."""
import functools
import importlib
import json
import re
from pathlib import Path

import pytest

from tests.runs import environment, run_command

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted([README, ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
METHOD_KEYS = {"SimCLR": "simclr", "SupCon": "supcon", "HMC": "hmc", "HCE": "hce",
               "HMCE": "hmce", "G-HMLC": "ghmlc", "A-HMLC": "ahmlc"}
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")


def doc_id(path):
  return str(path.relative_to(ROOT))


def section(text, title):
  """The lines of the ``## title`` section of a markdown text."""
  lines = text.splitlines()
  start = lines.index(f"## {title}") + 1
  end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
  return lines[start:end]


def code_lines(text):
  """Lines that are code: inside fenced blocks, or code spans of prose lines."""
  out, fenced = [], False
  for line in text.splitlines():
    if line.startswith("```"):
      fenced = not fenced
    elif fenced:
      out.append(line)
    else:
      out.extend(CODE_SPAN.findall(line))
  return out


# ----------------------------------------------------------------------------
# The README's results table

def probe_cell(entry):
  """'mean ± std' per level (or a single run's value), in %, as the README shows it."""
  acc = entry["linear_probe_accuracy"]
  if isinstance(acc, dict):
    return " / ".join(f"{100 * m:.1f} ± {100 * s:.1f}" for m, s in zip(acc["mean"], acc["std"]))
  return " / ".join(f"{100 * a:.1f}" for a in acc)


def results_rows():
  rows = []
  for line in section(README.read_text(), "Results at a glance"):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 5 and LINK.search(cells[4]):
      rows.append(cells)
  return rows


def expected_probe(method, source):
  data = json.loads((ROOT / source).read_text())
  entry = data["methods"][METHOD_KEYS[method]] if "methods" in data else data
  if "methods" not in data:
    assert data["config"]["method"] == METHOD_KEYS[method], (source, method)
  return probe_cell(entry)


def test_readme_results_table_is_read_from_its_json_files():
  rows = results_rows()
  assert len(rows) >= 5, "the results table lost its rows"
  for _, method, _, probe, source in rows:
    path = LINK.search(source).group(1)
    assert path.endswith(".json"), source
    assert probe == expected_probe(method, path), (method, path)


def test_the_table_check_fails_on_a_changed_number(tmp_path):
  """The comparison itself can fail: one changed accuracy is caught."""
  _, method, _, probe, source = results_rows()[-1]
  path = LINK.search(source).group(1)
  data = json.loads((ROOT / path).read_text())
  entry = data["methods"][METHOD_KEYS[method]] if "methods" in data else data
  acc = entry["linear_probe_accuracy"]
  values = acc["mean"] if isinstance(acc, dict) else acc
  values[-1] += 0.01                          # one point
  assert probe_cell(entry) != probe


# ----------------------------------------------------------------------------
# Links

def anchors(path):
  """GitHub's anchors of a markdown file's headings."""
  slug = lambda title: re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
  return {slug(line.lstrip("#")) for line in path.read_text().splitlines()
          if line.startswith("#")}


def broken_links(path):
  broken = []
  for target in LINK.findall(path.read_text()):
    if re.match(r"[a-z]+:", target):
      continue
    file, _, anchor = target.partition("#")
    resolved = path.parent / file if file else path
    if not resolved.exists():
      broken.append(target)
    elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
      broken.append(target)
  return broken


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
def test_every_relative_link_resolves(path):
  assert broken_links(path) == []


def test_a_broken_link_is_found(tmp_path):
  page = tmp_path / "page.md"
  (tmp_path / "there.md").write_text("# Title\n## A part: with, punctuation's\n")
  page.write_text("[ok](there.md) [web](https://example.org) [gone](missing.md#part) "
                  "[part](there.md#a-part-with-punctuations) [no part](there.md#b-part)")
  assert broken_links(page) == ["missing.md#part", "there.md#b-part"]


def test_the_documents_the_readme_promises_exist():
  for name in ("training", "data", "losses", "results", "benchmarks", "testing"):
    assert (ROOT / "docs" / f"{name}.md").is_file(), name
  for name in ("LICENSE", "CITATION.cff", "CHANGELOG.md"):
    assert (ROOT / name).is_file(), name
  assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_readme_is_short_and_in_order():
  text = README.read_text()
  assert len(text.splitlines()) <= 250
  titles = [line[3:] for line in text.splitlines() if line.startswith("## ")]
  assert titles == ["Results at a glance", "Install", "Quickstart",
                    "Using the losses in your own code", "Training on your own data",
                    "Reproducing the paper on a GPU or TPU", "Documentation", "Citation",
                    "Licence"]


# ----------------------------------------------------------------------------
# Names: configs, modules, flags, config fields

def named(pattern):
  """(document, name) for every match of ``pattern`` in the docs' text."""
  return [(doc_id(p), m) for p in DOCS for m in re.findall(pattern, p.read_text())]


def test_every_config_file_named_exists():
  names = named(r"\bconfigs/[\w.]+\.py")
  assert names
  missing = [(d, n) for d, n in names if not (ROOT / n).is_file()]
  assert missing == []


def module_exists(dotted):
  """A module path, or a module's attribute (``hmlc_jax.methods.METHODS``)."""
  parts = dotted.split(".")
  for cut in range(len(parts), 0, -1):
    base = ROOT.joinpath(*parts[:cut])
    for module in (base.with_suffix(".py"), base / "__init__.py"):
      if module.is_file():
        rest = parts[cut:]
        return not rest or (len(rest) == 1 and re.search(
            rf"^(def |class )?{re.escape(rest[0])}\b", module.read_text(), re.M) is not None)
  return False


def test_every_module_named_exists():
  dotted = named(r"\bhmlc_jax(?:\.\w+)+")
  paths = named(r"\bhmlc_jax/[\w/]+\.py")
  assert dotted and paths
  assert [(d, n) for d, n in dotted if not module_exists(n)] == []
  assert [(d, n) for d, n in paths if not (ROOT / n).is_file()] == []


def test_a_renamed_module_is_found():
  assert module_exists("hmlc_jax.losses.supcon_loss")
  assert not module_exists("hmlc_jax.losses.supcon_los")
  assert not module_exists("hmlc_jax.lossez")


@functools.lru_cache(maxsize=None)
def main_flags():
  out = run_command("main.py", ["--help"], environment(devices=None))
  assert out.returncode in (0, 1), out.stderr          # absl exits 1 after --help
  main_part = out.stdout.split("main.py:")[1].split("\n\n")[0] if "main.py:" in out.stdout \
      else out.stdout
  return frozenset(re.findall(r"^\s+--(?:\[no\])?(\w+)", main_part, re.M))


def flags_used(command):
  """(document, flag) for every ``--flag`` on a code line that runs ``command``."""
  used = []
  for path in DOCS:
    for line in code_lines(path.read_text()):
      if command in line:
        used += [(doc_id(path), f) for f in re.findall(r"(?<![\w.])--(\w+)", line)]
  return used


def test_main_flags_in_the_docs_exist():
  flags = main_flags()
  assert {"config", "workdir", "mode", "cpu_devices"} <= flags
  used = flags_used("main.py")
  assert used
  assert [(d, f) for d, f in used if f not in flags] == []


def test_training_doc_flag_table_matches_help():
  """docs/training.md lists exactly the flags `main.py --help` defines."""
  text = (ROOT / "docs" / "training.md").read_text()
  table = set(re.findall(r"^\|\s*`--(?:\[no\])?(\w+)", text, re.M))
  assert table == main_flags()


@pytest.mark.parametrize("module", ["hmlc_jax.compare", "hmlc_jax.ablation"])
def test_runner_flags_in_the_docs_exist(module):
  from hmlc_jax import sweeps       # the flags both runners share
  source = (ROOT / (module.replace(".", "/") + ".py")).read_text() + open(sweeps.__file__).read()
  defined = set(re.findall(r'add_argument\("--(\w+)"', source))
  assert defined
  assert [(d, f) for d, f in flags_used(module) if f not in defined] == []


@functools.lru_cache(maxsize=None)
def config_fields():
  fields = set()
  for path in sorted((ROOT / "configs").glob("*.py")):
    if path.stem in ("__init__", "common"):
      continue
    config = importlib.import_module(f"configs.{path.stem}").get_config("")
    stack = [("", config)]
    while stack:
      prefix, node = stack.pop()
      for key, value in node.items():
        fields.add(prefix + key)
        if hasattr(value, "items"):
          stack.append((prefix + key + ".", value))
  return frozenset(fields)


def test_every_config_field_named_exists():
  used = named(r"--config\.([\w.]*\w)=")
  assert used
  fields = config_fields()
  assert "gmm.init" in fields and "dataset.name" in fields
  assert [(d, f) for d, f in used if f not in fields] == []


# ----------------------------------------------------------------------------
# No dated measurements in code

DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def test_no_dated_measurement_in_code():
  files = [ROOT / "main.py", *(ROOT / "hmlc_jax").rglob("*.py"), *(ROOT / "configs").glob("*.py"),
           *(ROOT / "benchmarks").glob("*.py")]
  dated = [f"{p.relative_to(ROOT)}:{i}" for p in files
           for i, line in enumerate(p.read_text().splitlines(), 1) if DATE.search(line)]
  assert dated == []
