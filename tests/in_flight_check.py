"""Many pmapped steps with collectives, dispatched through the training loop's
`StepsInFlight`; run with 2 XLA devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m tests.in_flight_check

Each step is a 256-wide matmul, an ``all_gather`` and a ``psum`` (its device
work outlasts the host's dispatch, so an unbounded host runs ahead). Prints
``done STEPS`` once every step has finished (about 1 s). Without the bound,
XLA:CPU aborted in the all_gather's rendezvous with 200 or more steps (100
finished).
"""
import jax
import jax.numpy as jnp
import numpy as np

from hmlc_jax.loop import StepsInFlight

STEPS, WIDTH, ROWS = 300, 256, 256


def step(w, x):
  h = jnp.tanh(x @ w)
  gathered = jax.lax.all_gather(h, "d", tiled=True)
  w = w - 1e-6 * jax.lax.psum(x.T @ h, "d")
  return w, jnp.mean(gathered @ gathered.T)


def main():
  devices = jax.local_device_count()
  assert devices == 2, devices
  p_step = jax.pmap(step, axis_name="d", donate_argnums=(0,))
  w = jax.pmap(lambda i: 0.01 * jnp.eye(WIDTH) + i)(jnp.zeros(devices))
  x = np.random.default_rng(0).random((devices, ROWS, WIDTH), np.float32)
  in_flight = StepsInFlight()
  for _ in range(STEPS):
    w, loss = p_step(w, x)
    in_flight.add(loss)
  jax.block_until_ready(loss)
  print("done", STEPS)


if __name__ == "__main__":
  main()
