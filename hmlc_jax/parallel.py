"""What tracing knows about device-varying values (jax only, no flax).

Under ``jax.shard_map`` with its default ``check_vma=True``, JAX types every
value as varying over a set of mesh axes or not, and transposes collectives
exactly: the gradient of a replicated input used on device-varying values is
summed over devices by autodiff. ``jax.pmap`` (and ``shard_map`` with
``check_vma=False``) tracks no such types; there ``psum`` transposes to
another ``psum`` and the code sums gradient shares itself. Code that must be
exact in both asks `varies_over`.
"""
from __future__ import annotations

import jax


def varies_over(x, axis_name) -> bool:
  """Whether tracing marks ``x`` as varying over ``axis_name`` (a name or a
  tuple of names): True only inside ``shard_map`` with ``check_vma``."""
  names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
  return any(name in varying_axes(x) for name in names)


def varying_axes(x) -> frozenset:
  """The mesh axes tracing marks ``x`` as varying over (empty outside
  ``shard_map`` with ``check_vma``)."""
  aval = jax.typeof(x)
  manual = getattr(aval, "manual_axis_type", None)
  return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def vary_like(x, reference):
  """``x`` marked as varying over every axis ``reference`` varies over (a zero
  carry of a ``lax.scan`` that accumulates device-varying values)."""
  axes = tuple(sorted(varying_axes(reference) - varying_axes(x)))
  return jax.lax.pcast(x, axes, to="varying") if axes else x


def sum_like(cotangent, primal):
  """A custom VJP's ``cotangent`` of ``primal``, summed over the axes it varies
  over and ``primal`` does not (what autodiff's transpose of the implicit
  broadcast of a replicated value gives under ``shard_map``)."""
  axes = tuple(sorted(varying_axes(cotangent) - varying_axes(primal)))
  return jax.lax.psum(cotangent, axes) if axes else cotangent
