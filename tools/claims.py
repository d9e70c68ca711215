"""The method paper's claims, point by point, from `hmlc_jax.compare` folders.

    python tools/claims.py --balanced=results/hfashion/compare \\
        --long_tailed=results/hfashion/compare_lt0,results/hfashion/compare_lt1 \\
        --ordering=results/hdigits/compare_200steps --out=claims

Reads each folder's ``results.json`` (and, for a long-tailed folder, the
imbalanced level from its runs' configs), applies each claim's rule to G-HMLC
and A-HMLC against the baselines, and writes ``OUT.md`` (a table: the claim,
the numbers as mean ± std over seeds, the rule, "holds" or "does not hold")
and ``OUT.json``. A claim whose evidence is missing (no such folder, or runs
scored before a metric existed) reads "not measured".
"""
import argparse
import glob
import json
import os
import sys
from typing import Dict, List, Optional

CLAIMED = ("ghmlc", "ahmlc")
NAMES = {"supcon": "SupCon", "hmce": "HMCE", "ghmlc": "G-HMLC", "ahmlc": "A-HMLC"}
FINEST_GAIN = 2.0          # points of finest-level probe accuracy over HMCE
ORDER_TOLERANCE = 1.0      # points of path accuracy lost when the level order is swapped


def load(folder: str) -> Dict:
  with open(os.path.join(folder, "results.json")) as f:
    return json.load(f)


def stat(table: Dict, method: str, key: str, level: Optional[int] = None):
  """(mean, std) of a method's number (one level of a per-level one); None if absent."""
  entry = table["methods"].get(method, {}).get(key)
  if not entry or entry.get("mean") is None:
    return None
  mean, std = entry["mean"], entry["std"]
  if isinstance(mean, list):           # per level; a scalar is a list of one
    mean, std = mean[level or 0], std[level or 0]
  return (mean, std) if mean is not None else None


def fmt(value, scale: float = 100.0, digits: int = 1) -> str:
  if value is None:
    return "—"
  return f"{value[0] * scale:.{digits}f} ± {value[1] * scale:.{digits}f}"


def verdict(ok: Optional[bool]) -> str:
  return "not measured" if ok is None else ("holds" if ok else "does not hold")


def beats(a, b) -> Optional[bool]:
  """``a`` higher than ``b`` by more than the larger standard deviation."""
  if a is None or b is None:
    return None
  return a[0] - b[0] > max(a[1], b[1])


def finest_gain(table: Dict) -> List[Dict]:
  finest = len(table["level_names"]) - 1
  base = stat(table, "hmce", "linear_probe_accuracy", finest)
  rows = []
  for m in CLAIMED:
    mine = stat(table, m, "linear_probe_accuracy", finest)
    gain = None if mine is None or base is None else 100 * (mine[0] - base[0])
    rows.append(dict(claim=f"finest-level probe ≥ HMCE + {FINEST_GAIN:g} points", method=m,
                     numbers=f"{fmt(mine)} vs HMCE {fmt(base)} ({gain:+.1f} points)"
                     if gain is not None else "—",
                     rule=f"mean gain ≥ {FINEST_GAIN:g} points",
                     ok=None if gain is None else gain >= FINEST_GAIN))
  return rows


def separation(table: Dict) -> List[Dict]:
  levels = len(table["level_names"])
  rows = []
  for m in CLAIMED:
    pairs = [(stat(table, m, "silhouette", h), stat(table, "hmce", "silhouette", h))
             for h in range(levels)]
    wins = [beats(mine, base) for mine, base in pairs[1:]]
    numbers = "; ".join(f"level {h}: {fmt(mine, 1, 3)} vs {fmt(base, 1, 3)}"
                        for h, (mine, base) in enumerate(pairs))
    rows.append(dict(claim="every level separated where HMCE separates only the first "
                     "(silhouette)", method=m, numbers=numbers,
                     rule="silhouette above HMCE's at every level below the first "
                     "(by more than the larger std)",
                     ok=None if None in wins else all(wins)))
  return rows


def variance(table: Dict) -> List[Dict]:
  base = stat(table, "hmce", "embedding_variance")
  rows = []
  for m in CLAIMED:
    mine = stat(table, m, "embedding_variance")
    rel = None if mine is None or base is None else 100 * (mine[0] / base[0] - 1)
    rows.append(dict(claim="~3% more embedding variance than HMCE", method=m,
                     numbers=f"{fmt(mine, 1, 3)} vs HMCE {fmt(base, 1, 3)} ({rel:+.1f}%)"
                     if rel is not None else "—",
                     rule="variance above HMCE's by more than the larger std",
                     ok=beats(mine, base)))
  return rows


def milder_mistakes(table: Dict, label: str) -> List[Dict]:
  rows = []
  for m in CLAIMED:
    mine = stat(table, m, "mistake_severity")
    others = {b: stat(table, b, "mistake_severity") for b in ("hmce", "supcon")}
    ok = None if mine is None or None in others.values() else all(
        beats((-mine[0], mine[1]), (-o[0], o[1])) for o in others.values())
    numbers = f"{fmt(mine, 1, 3)} vs " + ", ".join(f"{NAMES[b]} {fmt(o, 1, 3)}"
                                                  for b, o in others.items())
    rows.append(dict(claim=f"milder mistakes ({label})", method=m, numbers=numbers,
                     rule="mistake severity of the finest probe below HMCE's and SupCon's "
                     "(by more than the larger std)", ok=ok))
  return rows


def imbalanced_level(folder: str) -> int:
  """The ``dataset.imbalance_level`` of the folder's runs."""
  for path in sorted(glob.glob(os.path.join(folder, "runs", "*", "results.json"))):
    with open(path) as f:
      return int(json.load(f)["config"]["dataset"]["imbalance_level"])
  raise SystemExit(f"error: {folder} has no runs/*/results.json")


def long_tailed(folder: str) -> List[Dict]:
  table, level = load(folder), imbalanced_level(folder)
  name = table["level_names"][level]
  rows = []
  for m in CLAIMED:
    mine = stat(table, m, "linear_probe_balanced_accuracy", level)
    others = {b: stat(table, b, "linear_probe_balanced_accuracy", level)
              for b in ("hmce", "supcon")}
    ok = None if mine is None or None in others.values() else all(
        beats(mine, o) for o in others.values())
    numbers = f"{fmt(mine)} vs " + ", ".join(f"{NAMES[b]} {fmt(o)}" for b, o in others.items())
    rows.append(dict(claim=f"better on a long-tailed level: '{name}' (level {level}) "
                     "imbalanced, balanced probe accuracy there", method=m, numbers=numbers,
                     rule="above HMCE and SupCon by more than the larger std", ok=ok))
  return rows


def level_order(folder: str) -> List[Dict]:
  ordering = load(folder).get("ordering", {})
  rows = []
  for m in CLAIMED:
    change = ordering.get(m, {}).get("change")
    numbers = "—" if change is None else ", ".join(
        f"{k} {100 * v:+.1f}" for k, v in change.items()) + " points"
    rows.append(dict(claim="robust to the order of the levels", method=m, numbers=numbers,
                     rule=f"path accuracy changes by ≤ {ORDER_TOLERANCE:g} point when the "
                     "levels are swapped",
                     ok=None if change is None else abs(100 * change["path"]) <= ORDER_TOLERANCE))
  return rows


def markdown(rows: List[Dict], sources: Dict[str, str]) -> str:
  lines = ["| claim | method | numbers (mean ± std over seeds) | rule | verdict |",
           "|---|---|---|---|---|"]
  lines += [f"| {r['claim']} | {NAMES[r['method']]} | {r['numbers']} | {r['rule']} | "
            f"**{verdict(r['ok'])}** |" for r in rows]
  lines += ["", "Sources: " + "; ".join(f"{k}: `{v}`" for k, v in sources.items() if v) + "."]
  return "\n".join(lines) + "\n"


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--balanced", required=True, help="compare folder of the balanced runs")
  p.add_argument("--long_tailed", default="", help="comma-separated long-tailed folders")
  p.add_argument("--ordering", default="", help="compare folder with swapped-order runs")
  p.add_argument("--out", required=True, help="writes OUT.md and OUT.json")
  args = p.parse_args(argv)
  for folder in [args.balanced, args.ordering] + args.long_tailed.split(","):
    if folder and not os.path.exists(os.path.join(folder, "results.json")):
      print(f"error: {folder} has no results.json (run hmlc_jax.compare first)",
            file=sys.stderr)
      sys.exit(2)
  table = load(args.balanced)
  rows = finest_gain(table) + separation(table) + variance(table)
  rows += milder_mistakes(table, "balanced")
  for folder in filter(None, args.long_tailed.split(",")):
    rows += long_tailed(folder) + milder_mistakes(
        load(folder), f"long-tailed level {imbalanced_level(folder)}")
  if not args.long_tailed:
    rows += [dict(claim="better on a long-tailed level (balanced probe accuracy there)",
                  method=m, numbers="—", rule="above HMCE and SupCon by more than the "
                  "larger std", ok=None) for m in CLAIMED]
  rows += level_order(args.ordering) if args.ordering else [
      dict(r, ok=None, numbers="—") for r in level_order(args.balanced)]
  sources = {"balanced": args.balanced, "long-tailed": args.long_tailed,
             "level order": args.ordering}
  with open(args.out + ".md", "w") as f:
    f.write(markdown(rows, sources))
  with open(args.out + ".json", "w") as f:
    json.dump({"rows": [dict(r, verdict=verdict(r["ok"])) for r in rows], "sources": sources},
              f, indent=1)
  print(markdown(rows, sources), end="")


if __name__ == "__main__":
  main()
