"""hmlc_jax.models: shapes, parameter counts, BatchNorm modes, heads, synchronised BN."""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hmlc_jax.errors import UserInputError
from hmlc_jax.models import BACKBONES, AttentionHeads, create_model
from hmlc_jax.models.resnet import BasicBlock
from tests.fixtures import section
from tests.runs import environment, run_command

# rbg keys: threefry sampling takes about a second to compile per shape on CPU.
KEY = jax.random.key(0, impl="rbg")
BATCH, WIDTH, DIM, LEVELS = 4, 4, 8, 3
INPUTS = {"resnet18": (8, 8, 3), "resnet50": (8, 8, 2), "small_cnn": (16, 16, 1),
          "pointnet": (32, 3)}
REPRESENTATION = {"resnet18": 8 * WIDTH, "resnet50": 32 * WIDTH, "small_cnn": 4 * WIDTH,
                  "pointnet": 16 * WIDTH}


def config(backbone: str = "small_cnn", **overrides) -> ml_collections.ConfigDict:
  return section("model", **(dict(backbone=backbone, width=WIDTH, projection_dim=DIM) | overrides))


def model_for(backbone: str, attention_heads: bool = True, axis_name=None, **overrides):
  return create_model(config(backbone, **overrides), num_levels=LEVELS,
                      attention_heads=attention_heads, axis_name=axis_name)


def inputs(backbone: str, seed: int = 0, batch: int = BATCH) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.normal(size=(batch,) + INPUTS[backbone]).astype(np.float32)


@functools.lru_cache(maxsize=None)
def variables_for(backbone: str):
  """Initial variables of ``model_for(backbone)`` (also valid for its dtype,
  activation and axis_name variants: those do not change the parameters)."""
  init = jax.jit(functools.partial(model_for(backbone).init, train=False))
  return init(KEY, inputs(backbone))


def count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def abstract_params(model, shape):
  """Parameter shapes without running the initialisers."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(functools.partial(model.init, train=False), KEY, x)["params"]


# ---- shapes and dtypes (traced only) ---------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("attention_heads", [True, False])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_output_shapes_and_dtypes(backbone, attention_heads, dtype):
  model = model_for(backbone, attention_heads, dtype=dtype)
  x = jax.ShapeDtypeStruct((BATCH,) + INPUTS[backbone], jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, train=False), KEY, x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  for train in (False, True):
    out, _ = jax.eval_shape(
        lambda v, a: model.apply(v, a, train=train, mutable=["batch_stats"]), variables, x)
    expected = {"representation": (BATCH, REPRESENTATION[backbone]),
                "embedding": (BATCH, DIM)}
    if attention_heads:
      expected["masks"] = (BATCH, LEVELS, DIM)
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(v.dtype == jnp.float32 for v in out.values())


@pytest.mark.parametrize("hidden, expected", [(0, REPRESENTATION["small_cnn"]), (24, 24)])
def test_projection_hidden_dim(hidden, expected):
  model = model_for("small_cnn", projection_hidden_dim=hidden)
  params = abstract_params(model, (1,) + INPUTS["small_cnn"])
  assert params["projection"]["hidden"]["kernel"].shape == (REPRESENTATION["small_cnn"],
                                                             expected)
  assert params["projection"]["out"]["kernel"].shape == (expected, DIM)
  assert params["attention"]["hidden_kernel"].shape == (LEVELS, DIM, DIM)


def test_wrong_input_rank_is_rejected():
  model = model_for("pointnet")
  with pytest.raises(ValueError, match="point clouds"):
    abstract_params(model, (2, 8, 8, 3))


# ---- parameter counts at full width -----------------------------------------


def conv_bn(cin: int, cout: int, kernel: int) -> int:
  """Bias-free conv plus BatchNorm scale and bias."""
  return kernel * kernel * cin * cout + 2 * cout


def cifar_resnet_count(blocks, bottleneck: bool, width: int = 64, channels: int = 3) -> int:
  total, cin = conv_bn(channels, width, 3), width
  for stage, num_blocks in enumerate(blocks):
    mid = width * 2 ** stage
    cout = 4 * mid if bottleneck else mid
    for index in range(num_blocks):
      if bottleneck:
        total += conv_bn(cin, mid, 1) + conv_bn(mid, mid, 3) + conv_bn(mid, cout, 1)
      else:
        total += conv_bn(cin, mid, 3) + conv_bn(mid, mid, 3)
      if cin != cout or (stage > 0 and index == 0):
        total += conv_bn(cin, cout, 1)
      cin = cout
  return total


def head_count(rep: int, hidden: int, dim: int, levels: int) -> int:
  projection = rep * hidden + hidden + hidden * dim + dim
  return projection + levels * 2 * (dim * dim + dim)


@pytest.mark.parametrize("backbone, blocks, bottleneck, known, rep", [
    ("resnet18", (2, 2, 2, 2), False, 11_168_832, 512),
    ("resnet50", (3, 4, 6, 3), True, 23_500_352, 2048),
])
def test_resnet_parameter_counts(backbone, blocks, bottleneck, known, rep):
  model = create_model(config(backbone, width=64, projection_dim=128), num_levels=2,
                       attention_heads=True)
  params = abstract_params(model, (1, 32, 32, 3))
  assert count(params["backbone"]) == cifar_resnet_count(blocks, bottleneck) == known
  assert count(params) == known + head_count(rep, rep, 128, 2)


def test_small_cnn_and_pointnet_parameter_counts():
  cnn = abstract_params(model_for("small_cnn", width=32, attention_heads=False),
                        (1, 32, 32, 1))
  widths = (1, 32, 32, 64, 64, 128, 128)
  assert count(cnn["backbone"]) == sum(conv_bn(a, b, 3) for a, b in zip(widths, widths[1:]))
  points = abstract_params(model_for("pointnet", width=64, attention_heads=False), (1, 16, 3))
  widths = (3, 64, 64, 64, 128, 1024)
  assert count(points["backbone"]) == sum(conv_bn(a, b, 1) for a, b in zip(widths, widths[1:]))


# ---- BatchNorm train / eval --------------------------------------------------


def test_eval_is_deterministic_and_keeps_batch_stats():
  model, x = model_for("small_cnn"), inputs("small_cnn")
  variables = variables_for("small_cnn")
  apply = jax.jit(lambda v, a: model.apply(v, a, train=False, mutable=["batch_stats"]))
  (out1, stats1), (out2, _) = apply(variables, x), apply(variables, x)
  jax.tree.map(np.testing.assert_array_equal, out1, out2)
  jax.tree.map(np.testing.assert_array_equal, stats1["batch_stats"],
               variables["batch_stats"])
  # Eval output of one example does not depend on the rest of the batch.
  alone, _ = apply(variables, x[:1])
  np.testing.assert_allclose(alone["embedding"], out1["embedding"][:1], rtol=1e-5, atol=1e-6)


def test_train_mode_updates_running_statistics():
  model, x = model_for("pointnet"), inputs("pointnet") + 3.0
  variables = variables_for("pointnet")
  _, updates = jax.jit(lambda v, a: model.apply(v, a, train=True, mutable=["batch_stats"]))(
      variables, x)
  stats = updates["batch_stats"]["backbone"]
  # The first BN sees x @ kernel: running = 0.9 * initial + 0.1 * batch statistic.
  h = np.asarray(x, np.float64) @ np.asarray(variables["params"]["backbone"]["mlp1"]["kernel"])
  np.testing.assert_allclose(stats["bn1"]["mean"], 0.1 * h.mean(axis=(0, 1)), rtol=1e-4,
                             atol=1e-6)
  np.testing.assert_allclose(stats["bn1"]["var"], 0.9 + 0.1 * h.var(axis=(0, 1)), rtol=1e-4)
  for name, layer in stats.items():
    assert not np.allclose(layer["mean"], 0.0), name


def test_eval_with_axis_name_runs_outside_pmap():
  x = inputs("pointnet")
  synced, plain = model_for("pointnet", axis_name="batch"), model_for("pointnet")
  variables = variables_for("pointnet")
  got = jax.jit(functools.partial(synced.apply, train=False))(variables, x)
  want = jax.jit(functools.partial(plain.apply, train=False))(variables, x)
  jax.tree.map(np.testing.assert_array_equal, got, want)


def test_zero_init_residual_block_starts_as_relu_identity():
  block = BasicBlock(features=4, zero_init_residual=True)
  x = np.random.default_rng(1).normal(size=(2, 4, 4, 4)).astype(np.float32)
  variables = jax.jit(functools.partial(block.init, train=False))(KEY, x)
  np.testing.assert_allclose(block.apply(variables, x, train=True, mutable=["batch_stats"])[0],
                             np.maximum(x, 0.0), atol=1e-6)


def test_bfloat16_compute_is_close_to_float32():
  x = inputs("small_cnn")
  f32 = model_for("small_cnn")
  bf16 = model_for("small_cnn", dtype="bfloat16", attention_activation="softmax")
  variables = variables_for("small_cnn")
  want = jax.jit(functools.partial(f32.apply, train=False))(variables, x)
  got = jax.jit(functools.partial(bf16.apply, train=False))(variables, x)
  scale = np.max(np.abs(want["embedding"]))
  np.testing.assert_allclose(got["embedding"], want["embedding"], atol=0.05 * scale)
  assert not np.array_equal(got["embedding"], want["embedding"])
  # Masks are computed in float32 from the bfloat16 logits.
  np.testing.assert_allclose(got["masks"].sum(axis=-1), DIM, rtol=1e-5)


# ---- PointNet ----------------------------------------------------------------


def test_pointnet_is_invariant_to_point_order():
  model, x = model_for("pointnet"), inputs("pointnet", seed=2)
  rng = np.random.default_rng(3)
  permuted = np.stack([p[rng.permutation(len(p))] for p in x])
  variables = variables_for("pointnet")
  for train in (False, True):
    run = jax.jit(lambda v, a: model.apply(v, a, train=train, mutable=["batch_stats"]))
    (a, stats_a), (b, stats_b) = run(variables, x), run(variables, permuted)
    jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6),
                 (a, stats_a), (b, stats_b))


# ---- attention heads -----------------------------------------------------------


def reference_masks(params, z, activation):
  """Per-level loop in float64: Dense -> ReLU -> Dense -> activation."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  masks = []
  for h in range(p["hidden_kernel"].shape[0]):
    hidden = np.maximum(z @ p["hidden_kernel"][h] + p["hidden_bias"][h], 0.0)
    logits = hidden @ p["out_kernel"][h] + p["out_bias"][h]
    if activation == "sigmoid":
      masks.append(1.0 / (1.0 + np.exp(-logits)))
    else:
      e = np.exp(logits - logits.max(axis=-1, keepdims=True))
      masks.append(z.shape[-1] * e / e.sum(axis=-1, keepdims=True))
  return np.stack(masks, axis=1)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_attention_heads(activation):
  z = np.random.default_rng(4).normal(size=(5, DIM)).astype(np.float32)
  heads = AttentionHeads(num_levels=LEVELS, activation=activation)
  params = jax.jit(heads.init)(KEY, z)
  # Non-zero biases so the reference check covers them.
  params = jax.tree.map(lambda a: a + 0.1 if a.ndim == 2 else a, params)
  masks = np.asarray(jax.jit(heads.apply)(params, z))
  assert masks.shape == (5, LEVELS, DIM) and masks.dtype == np.float32
  np.testing.assert_allclose(masks, reference_masks(params["params"], z, activation),
                             rtol=1e-5, atol=1e-6)
  assert not np.allclose(masks[:, 0], masks[:, 1])
  if activation == "sigmoid":
    assert np.all((masks > 0) & (masks < 1))
  else:
    assert np.all(masks > 0)
    np.testing.assert_allclose(masks.sum(axis=-1), DIM, rtol=1e-5)


# ---- configuration errors --------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("backbone", "vit"), ("dtype", "float16"), ("attention_activation", "relu"),
    ("width", 0), ("projection_dim", -1), ("projection_hidden_dim", 1.5),
    ("zero_init_residual", "yes"), ("pool", "max"),
])
def test_bad_config_names_the_field(field, value):
  with pytest.raises(UserInputError, match=rf"model\.{field}\b") as info:
    create_model(config(**{"backbone": "small_cnn", field: value}), num_levels=2,
                 attention_heads=True)
  assert "\n" not in str(info.value)
  if field == "backbone":
    assert all(name in str(info.value) for name in BACKBONES)


# ---- synchronised BatchNorm --------------------------------------------------------


@pytest.mark.parametrize("backbone", sorted(INPUTS))
def test_every_batchnorm_of_the_backbone_synchronises_over_its_axis(backbone):
  """Each BatchNorm a backbone runs in train mode gets the model's ``axis_name``
  (traced under a named vmap, nothing compiled). The values of the two BatchNorm
  modules under pmap: the 4-device parity tests below (PointNet runs the same
  ``nn.BatchNorm`` factory as the ResNets)."""
  import flax.linen as nn
  from hmlc_jax.models.batchnorm import BatchNormReLU
  model = model_for(backbone, axis_name="batch")
  one = jax.ShapeDtypeStruct((BATCH,) + INPUTS[backbone], jnp.float32)
  x = jax.ShapeDtypeStruct((2,) + one.shape, jnp.float32)     # 2 "devices" of the axis
  variables = jax.eval_shape(lambda a: model.init(KEY, a, train=False), one)
  seen = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, (nn.BatchNorm, BatchNormReLU)):
      seen.append((context.module.path, context.module.axis_name))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, a: jax.vmap(
        lambda b: model.apply(v, b, train=True, mutable=["batch_stats"]),
        axis_name="batch")(a), variables, x)
  # Every module holding BatchNorm statistics ran, each with the axis.
  assert len(seen) == len(jax.tree.leaves(variables["batch_stats"])) // 2 > 0
  assert {axis for _, axis in seen} == {"batch"}, [p for p, a in seen if a != "batch"]


# ---- synchronised BatchNorm on 4 CPU devices ------------------------------------


@pytest.fixture(scope="module")
def sync_report():
  out = run_command("tests.sync_batchnorm_parity", [], environment(devices=4), timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


BACKBONES_SYNCED = ["pointnet", "small_cnn", "resnet18"]
# Gradient sums over 4 devices against one: float32 sums in another order, over
# ResNet-18's 20 BatchNorm layers too.
GRAD_RTOL = 3e-5


@pytest.mark.parametrize("backbone", BACKBONES_SYNCED)
def test_synchronised_batchnorm_matches_single_device(sync_report, backbone):
  assert sync_report["devices"] == 4
  case = sync_report[backbone]
  for style in (case["synced"], case["shard_map"]):         # pmap, shard_map
    assert style["outputs"] <= 1e-5, case
    assert style["batch_stats"] <= 1e-5, case


@pytest.mark.parametrize("backbone", ["pointnet", "small_cnn"])
def test_unsynchronised_batchnorm_differs(sync_report, backbone):
  # Per-device statistics differ: the parity comparison can tell the two apart.
  local = sync_report[backbone]["local"]
  assert local["outputs"] > 1e-2 and local["batch_stats"] > 1e-2, local


@pytest.mark.parametrize("backbone", BACKBONES_SYNCED)
def test_summed_device_gradients_match_single_device(sync_report, backbone):
  """pmap: the per-device gradients summed; shard_map: the replicated
  parameters' gradient as autodiff sums it."""
  case = sync_report[backbone]
  assert case["grad"] <= GRAD_RTOL, case
  assert case["shard_map"]["grad"] <= GRAD_RTOL, case


# ---- forward-mode differentiation (CPU kernels off) --------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
def test_jvp_through_every_backbone_matches_reverse_mode(backbone):
  """With ``model.cpu_kernels`` off (the default) every backbone is plain
  Flax / lax: ``jax.jvp`` runs, and its tangent agrees with reverse mode on
  the dot-product test ``<u, J v> = <J^T u, v>`` for random ``u``, ``v``."""
  model = model_for(backbone, attention_heads=False)
  variables = variables_for(backbone)
  x, v = inputs(backbone), inputs(backbone, seed=1)
  f = lambda a: model.apply(variables, a, train=False)["representation"]

  def both(a, t, u):
    out, tangent = jax.jvp(f, (a,), (t,))
    cotangent = jax.vjp(f, a)[1](u)[0]
    return jnp.vdot(u, tangent), jnp.vdot(cotangent, t)

  u = np.random.default_rng(2).normal(size=(BATCH, REPRESENTATION[backbone]))
  forward, reverse = jax.jit(both)(x, v, u.astype(np.float32))
  np.testing.assert_allclose(float(forward), float(reverse), rtol=1e-4)
  assert abs(float(forward)) > 1e-3                            # not trivially zero


def test_cpu_kernels_are_reverse_mode_only():
  """The hand-written CPU gradients (``model.cpu_kernels=True``, the small-CNN
  CPU recipe) block forward mode: why they are off unless a config asks."""
  model = model_for("small_cnn", attention_heads=False, cpu_kernels=True)
  f = lambda a: model.apply(variables_for("small_cnn"), a, train=False)["representation"]
  x = inputs("small_cnn")
  with pytest.raises(TypeError, match="custom_vjp"):
    jax.jvp(f, (x,), (x,))
  np.testing.assert_allclose(jax.jit(f)(x), model_for("small_cnn", attention_heads=False).apply(
      variables_for("small_cnn"), x, train=False)["representation"], rtol=1e-5, atol=1e-6)
