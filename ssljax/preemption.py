"""Stopping cleanly on SIGTERM (a scheduler's preemption notice) or SIGINT (Ctrl-C): the train loop finishes the
step in flight, saves a checkpoint and exits 0, and a re-launch continues from there.

One process: the signal sets a flag that the loop reads between steps. Several processes (`jax.distributed`):
JAX's preemption sync service owns SIGTERM; a notice reaching any host is shared with all of them, and
`multihost_utils.reached_preemption_sync_point` turns true on every host at the same step, so all hosts save the
same step together. SIGINT is forwarded to that service as a SIGTERM.
"""

import os
import signal

import jax
from absl import logging
from jax.experimental import multihost_utils


class PreemptionWatch:
  """Context manager; call `reached()` once per train step on every process."""

  def __init__(self):
    self._requested = None
    self._calls = 0
    self._previous = {}

  def _request(self, signum, frame):
    logging.warning("received %s: stopping after the current step", signal.Signals(signum).name)
    self._requested = signal.Signals(signum).name

  def _forward_to_sync_service(self, signum, frame):
    logging.warning("received SIGINT: notifying all hosts to stop")
    os.kill(os.getpid(), signal.SIGTERM)

  def __enter__(self):
    handlers = {signal.SIGINT: self._forward_to_sync_service}
    if jax.process_count() == 1:
      handlers = {signal.SIGTERM: self._request, signal.SIGINT: self._request}
    for signum, handler in handlers.items():
      self._previous[signum] = signal.signal(signum, handler)
    return self

  def __exit__(self, *exc_info):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def reached(self) -> bool:
    """Whether to stop now (after the step just dispatched); the same answer at the same call on every host."""
    self._calls += 1  # Monotonic on every host, unlike the train step, which a rollback moves back.
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(self._calls)
    return self._requested is not None
