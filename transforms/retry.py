"""One retry helper for every loop that tries again (on tenacity).

Two shapes cover the loader's waits:

* ``until_deadline`` -- a step that should pass soon (a DDL while the table's other schema change
  ends, an FE that is being restarted, a column that shows once its job ends): tried again with
  jittered exponential backoff, never sleeping past the deadline; at the deadline the last error
  is raised (or, for a polled condition, the last result returned).
* ``through_outages`` -- a long-running job outliving an outage of a service it needs (the
  cluster, the schema registry): tried again every ``OUTAGE_RETRY_SECS`` for as long as the
  failure says the service is away; any other failure is raised at once.

Both take the clock and the sleep (tests drive them on fake time) and a ``before_sleep`` hook
(what to log and count before each wait). Which failures are retried is the caller's
classification (``transforms.errors``), never decided here.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional

import tenacity

__all__ = ['OUTAGE_RETRY_SECS', 'until_deadline', 'through_outages', 'Attempt']

# How often a long-running job tries a service again while it is away.
OUTAGE_RETRY_SECS = 5.0

# What a ``before_sleep`` hook is given: tenacity's state of the call (``outcome``,
# ``attempt_number``, ``next_action.sleep``).
Attempt = tenacity.RetryCallState


def _backoff(initial_secs: float, max_secs: float) -> Callable[[Attempt], float]:
  """Doubling from ``initial_secs`` up to ``max_secs``, each wait 50-100 % of that."""

  def wait(state: Attempt) -> float:
    step = min(initial_secs * (2 ** min(state.attempt_number - 1, 30)), max_secs)
    return step * random.uniform(0.5, 1.0)

  return wait


def until_deadline(*, deadline: float, initial_secs: float, max_secs: float,
                   retry_on: Optional[Callable[[BaseException], bool]] = None,
                   retry_while: Optional[Callable[[Any], bool]] = None,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep,
                   before_sleep: Optional[Callable[[Attempt], None]] = None
                   ) -> tenacity.Retrying:
  """A ``Retrying`` that tries again until ``clock()`` reaches ``deadline``.

  Args:
    deadline: on ``clock``'s scale; the first attempt is always made.
    initial_secs, max_secs: the backoff (jittered, doubling, capped; cut to the deadline).
    retry_on: which raised errors are tried again (others are raised at once).
    retry_while: which results are polled again (a condition not met yet).
    clock, sleep: time (tests).
    before_sleep: called before each wait.

  Returns:
    Call it with the function (and its arguments). At the deadline the last error is raised, or
    the last result returned.
  """
  backoff = _backoff(initial_secs, max_secs)
  conditions = []
  if retry_on is not None:
    conditions.append(tenacity.retry_if_exception(retry_on))
  if retry_while is not None:
    conditions.append(tenacity.retry_if_result(retry_while))
  return tenacity.Retrying(
      retry=tenacity.retry_any(*conditions) if conditions else tenacity.retry_never,
      stop=lambda state: clock() >= deadline,
      wait=lambda state: min(backoff(state), max(deadline - clock(), 0.0)),
      sleep=sleep, before_sleep=before_sleep, reraise=True,
      retry_error_callback=lambda state: state.outcome.result())


def through_outages(*, retry_on: Callable[[BaseException], bool],
                    sleep: Callable[[float], None] = time.sleep,
                    before_sleep: Optional[Callable[[Attempt], None]] = None,
                    interval_secs: float = OUTAGE_RETRY_SECS) -> tenacity.Retrying:
  """A ``Retrying`` that tries again every ``interval_secs`` while ``retry_on(error)``.

  Call it with the function (and its arguments); an error ``retry_on`` refuses is raised at once.
  """
  return tenacity.Retrying(retry=tenacity.retry_if_exception(retry_on), stop=tenacity.stop_never,
                           wait=tenacity.wait_fixed(interval_secs), sleep=sleep,
                           before_sleep=before_sleep, reraise=True)
