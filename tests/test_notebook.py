"""The Colab notebook's code cells run on CPU with the hdigits smoke config."""
import contextlib
import io
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "colab_tpu.ipynb"


def code_cells():
  cells = json.loads(NOTEBOOK.read_text())["cells"]
  return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_code_cells_are_plain_python():
  for source in code_cells():
    assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines())


def test_notebook_runs_with_the_smoke_config(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  monkeypatch.chdir(ROOT)
  monkeypatch.setenv("HMLC_NOTEBOOK_CONFIG", "configs/hdigits_ghmlc.py:smoke")
  monkeypatch.setenv("HMLC_NOTEBOOK_WORKDIR", str(workdir))
  # Without TensorBoard output and the throughput timing (their TensorFlow import and
  # matmuls; the run tests check both).
  monkeypatch.setenv("HMLC_NOTEBOOK_FLAGS",
                     "--cpu_devices=1 --config.tensorboard=False --config.throughput=False"
                     " --config.num_train_steps=30")
  monkeypatch.setenv("PYTHONPATH", str(ROOT))
  namespace, out = {}, io.StringIO()
  with contextlib.redirect_stdout(out):
    for source in code_cells():
      exec(compile(source, str(NOTEBOOK), "exec"), namespace)   # pylint: disable=exec-used
  printed = out.getvalue()
  assert "device count:" in printed and "linear probe" in printed
  assert namespace["results"]["steps"] == 30
  assert os.path.getsize(workdir / "tsne.png") > 0
