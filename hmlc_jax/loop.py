"""The training loop: steps from a batch stream, with logging, checkpoints,
non-finite guards, stop signals and evaluations along the way.

`run` takes a compiled step, a state and an iterator of batches; it knows
nothing of where the batches come from (in memory or streamed,
`hmlc_jax.data.pipeline`) nor of the model. Every ``log_every_steps`` it
writes the step's metrics (console, TensorBoard), every
``checkpoint_every_steps`` and at the end it saves a checkpoint (finite
states only), and every ``eval.every_steps`` it calls ``evaluate_at`` with the
state.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Callable, Dict, Iterator, Optional

from flax import jax_utils
import jax
import ml_collections

from hmlc_jax import checkpoints, progress, throughput
from hmlc_jax.distributed import is_lead
from hmlc_jax.errors import NonFiniteError
from hmlc_jax.preemption import StopSignals
from hmlc_jax.step import replicate

# Steps dispatched and not yet finished, at most. XLA:CPU's host devices can
# abort in a collective's rendezvous ("Termination timeout for all gather")
# when many pmapped steps with collectives are queued; 2 keeps the next
# batch's host work beside the running step (tests/in_flight_check.py).
MAX_STEPS_IN_FLIGHT = 2


class StepsInFlight:
  """Bounds the steps dispatched ahead: `add` a step's outputs after dispatching
  it; it waits for the oldest ones while more than ``limit`` are unfinished."""

  def __init__(self, limit: int = MAX_STEPS_IN_FLIGHT):
    self.limit, self.queue = limit, collections.deque()

  def add(self, outputs) -> None:
    self.queue.append(outputs)
    while len(self.queue) > self.limit:
      jax.block_until_ready(self.queue.popleft())


@dataclasses.dataclass
class LoopResult:
  """What the loop hands back: the state (one copy), the steps done, the signal
  that stopped it (or None), the last logged metrics, the timed rate (the
  first step, which compiles, left out) and the CPU's matmul reference
  measured around the timed steps (``config.throughput``)."""
  state: Any
  steps: int
  stopped_by: Optional[str]
  last_logged: Dict[str, float]
  examples_per_sec: Optional[float]
  matmul: Optional[Any]


def run(p_step: Callable, state, batches: Iterator[Dict], *,
        config: ml_collections.ConfigDict, num_steps: int, manager,
        logdir: Optional[str] = None,
        evaluate_at: Optional[Callable[[int, Any], Dict[str, float]]] = None) -> LoopResult:
  """Runs steps ``state.step .. num_steps - 1`` of ``p_step`` on ``batches``.

  SIGTERM or SIGINT (`preemption.StopSignals`) ends the loop after the current
  step with a checkpoint there (``stopped_by`` in the result).

  Args:
    p_step: ``(replicated state, batch) -> (state, metrics)``, pmapped.
    state: the state to start from (one copy; replicated here).
    batches: the batches of those steps, in order.
    config: the run's config (logging, checkpoint, skip and evaluation settings).
    manager: the orbax checkpoint manager; waited for and closed on the way out.
    logdir: TensorBoard folder (written when ``config.tensorboard``), or None.
    evaluate_at: ``(step, state) -> scalars`` called every ``config.eval.every_steps``
      steps before the last (0: never); the scalars are logged at that step.

  Returns:
    `LoopResult`.

  Raises:
    NonFiniteError: rejected non-finite updates beyond ``nan_policy``.
  """
  with StopSignals() as stop:
    return _run(p_step, replicate(state), batches, int(state.step), config, num_steps,
                manager, logdir, stop, evaluate_at)


def _run(p_step, replicated, batches, start, config, num_steps, manager, logdir, stop,
         evaluate_at) -> LoopResult:
  lead = is_lead()
  writer = progress.create_writer(logdir if lead and config.tensorboard else None,
                                  console=lead and config.log_to_console)
  bar = progress.progress_bar(num_steps, start, enabled=lead and config.progress_bar)
  every_eval = config.eval.get("every_steps", 0) if evaluate_at else 0
  stopped_by, done, metrics, logged = None, start, None, {}
  timed_from, t0, matmul, in_flight = None, time.perf_counter(), None, StepsInFlight()
  try:
    for step in range(start, num_steps):
      replicated, metrics = p_step(replicated, next(batches))
      in_flight.add(metrics)
      done = step + 1
      if done == start + 1:               # the first step includes compilation
        jax.block_until_ready(metrics)
        if config.throughput:             # the CPU's reference rate, before the timed steps
          matmul = throughput.measure_reference()
        timed_from, t0 = done, time.perf_counter()
      stopped_by = stop.poll(done, config.log_every_steps)
      if done % config.log_every_steps == 0 or done == num_steps:
        scalars = jax.device_get(jax_utils.unreplicate(metrics))
        writer.write_scalars(done, scalars)
        logged = dict({k: float(v) for k, v in scalars.items()}, step=done)
        bar.set_postfix(loss=f"{float(scalars['loss']):.4f}", refresh=False)
      if done % config.checkpoint_every_steps == 0 or done == num_steps or stopped_by:
        check_skips(replicated, config, done, manager)
        checkpoints.save_finite(manager, jax_utils.unreplicate(replicated))
      elif done % config.log_every_steps == 0:
        check_skips(replicated, config, done, manager)
      if every_eval and done % every_eval == 0 and done < num_steps and not stopped_by:
        paused = time.perf_counter()
        writer.write_scalars(done, evaluate_at(done, jax_utils.unreplicate(replicated)))
        t0 += time.perf_counter() - paused      # evaluations are not training time
      bar.update(1)
      if stopped_by:
        break
    jax.block_until_ready(replicated)
    elapsed = time.perf_counter() - t0
  finally:                             # also on errors: let orbax finish writing
    bar.close()
    manager.wait_until_finished()
    writer.close()
    manager.close()
  if matmul is not None:        # and after them, once the last checkpoint is written
    throughput.measure_reference(matmul)
  timed = done - timed_from if timed_from is not None else 0
  return LoopResult(state=jax_utils.unreplicate(replicated), steps=done, stopped_by=stopped_by,
                    last_logged=logged, matmul=matmul,
                    examples_per_sec=timed * config.batch_size / elapsed if timed else None)


def check_skips(replicated, config: ml_collections.ConfigDict, step: int, manager) -> None:
  """NonFiniteError when the rejected non-finite updates so far break ``nan_policy``."""
  skips, longest, first = (int(jax.device_get(x[0])) for x in (
      replicated.skips, replicated.longest_skip_run, replicated.first_skip_step))
  last = f"last good checkpoint: step {manager.latest_step()}"
  if config.nan_policy == "stop" and skips:
    raise NonFiniteError(f"non-finite loss or gradient at step {first} (not applied); "
                         f"stopped by nan_policy=stop; {last}")
  if longest >= config.max_skips:
    raise NonFiniteError(f"{longest} non-finite steps in a row by step {step} "
                         f"(nan_policy=skip, max_skips={config.max_skips}); {last}")
