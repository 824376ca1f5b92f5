"""Which functions JAX traced or lowered while a block ran: a second step that retraces or recompiles shows up here.

JAX's own monitoring events, not the jitted function's C++ dispatch cache: that cache stayed empty in one CI worker
(`_cache_size() == 0` after three steps), while every trace and every lowering records these events."""

import contextlib

import jax

_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")
_seen: list[str] = []


def _record(event: str, duration: float, **kwargs) -> None:
  del duration
  if event in _EVENTS:
    _seen.append(kwargs.get("fun_name", "?"))


jax.monitoring.register_event_duration_secs_listener(_record)


@contextlib.contextmanager
def compiled_functions():
  """Yields a list that holds, once the block ends, the name of each function traced or lowered inside it."""
  start = len(_seen)
  names: list[str] = []
  try:
    yield names
  finally:
    names.extend(_seen[start:])
