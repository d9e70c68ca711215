"""Does `fit_gmm` keep every component? Random 1-D mixtures against scikit-learn.

    python benchmarks/gmm_components.py --json=benchmarks/results/gmm_components.json

Draws ``--mixtures`` mixtures, a third each with K = 2, 3 and 4 components:
standard deviations uniform in [0.5, 2], neighbouring means at least 6 of the
larger standard deviation apart (6 to 16), weights Dirichlet(4, ..., 4),
``--points`` points each. Fits every one with `fit_gmm` (``--iters`` EM
iterations) for each initialisation variant and with scikit-learn's
``GaussianMixture`` (5 k-means starts), and reports per variant the share of
fits whose mean log-likelihood is within 0.5% of scikit-learn's, the share
with every component alive (weight >= 1 / points), and the worst relative
shortfall.
"""
import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from hmlc_jax.gmm import fit_gmm


def draw(rng, k, n):
  """One mixture's sample: ``[n]`` points."""
  sds = rng.uniform(0.5, 2.0, k)
  means = [rng.uniform(-10, 10)]
  for i in range(1, k):
    means.append(means[-1] + rng.uniform(6, 16) * max(sds[i - 1], sds[i]))
  weights = rng.dirichlet(np.full(k, 4.0))
  comp = rng.choice(k, size=n, p=weights)
  return rng.normal(np.asarray(means)[comp], sds[comp])


def parse_variant(text):
  """``"range"``, ``"split"``, or either with ``+reseed`` / ``+noreseed``."""
  init, _, reseed = text.partition("+")
  options = {"init": init}
  if reseed:
    options["reseed"] = reseed == "reseed"
  return options


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--mixtures", type=int, default=1000)
  p.add_argument("--points", type=int, default=256)
  p.add_argument("--iters", type=int, default=50)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--variants", default="range+noreseed,split+noreseed,range+reseed,split+reseed")
  p.add_argument("--json", default="")
  args = p.parse_args()

  rng = np.random.default_rng(args.seed)
  ks = [2 + i % 3 for i in range(args.mixtures)]
  rows = {k: [] for k in (2, 3, 4)}
  for k in ks:
    rows[k].append(draw(rng, k, args.points))
  reference = {k: np.array([GaussianMixture(k, n_init=5, tol=1e-8, max_iter=500, random_state=0)
                            .fit(x[:, None]).score(x[:, None]) for x in rows[k]])
               for k in rows}
  report = {"command": "python benchmarks/gmm_components.py " + " ".join(
                f"--{name}={value}" for name, value in vars(args).items() if name != "json"),
            "date": time.strftime("%Y-%m-%d"),
            "machine": platform.processor() or platform.machine(),
            "jax": jax.__version__, "variants": {}}
  print(f"{'variant':<16} {'within 0.5%':>12} {'all alive':>10} {'worst shortfall':>16}")
  for text in args.variants.split(","):
    options = parse_variant(text)
    within = alive = 0
    worst = 0.0
    for k, xs in rows.items():
      x = jnp.asarray(np.stack(xs), jnp.float32)
      fit = jax.jit(lambda a, k=k: fit_gmm(a, k, num_iters=args.iters, **options))(x)
      ll = np.asarray(fit.log_likelihood, np.float64)
      shortfall = (reference[k] - ll) / np.abs(reference[k])
      within += int(np.sum(shortfall <= 0.005))
      alive += int(np.sum(np.min(np.asarray(fit.weights), -1) * args.points >= 1.0))
      worst = max(worst, float(np.max(shortfall)))
    entry = {"within_half_percent": within / args.mixtures, "all_alive": alive / args.mixtures,
             "worst_shortfall": worst}
    report["variants"][text] = entry
    print(f"{text:<16} {entry['within_half_percent']:>12.2%} {entry['all_alive']:>10.2%} "
          f"{worst:>16.1%}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(report, f, indent=1)


if __name__ == "__main__":
  main()
