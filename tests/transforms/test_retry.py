"""The retry helper: what it tries again, how long it waits, what it gives up with."""

import pytest

from tests.fakes import FakeClock
from transforms import retry

pytestmark = pytest.mark.unit


class _Busy(Exception):
  pass


def _failing(times, error=_Busy):
  calls = []

  def call(value):
    calls.append(value)
    if len(calls) <= times:
      raise error(f'attempt {len(calls)}')
    return value * 2

  return call, calls


def test_until_deadline_retries_what_it_is_told_then_returns():
  clock = FakeClock(100.0)
  call, calls = _failing(3)
  got = retry.until_deadline(deadline=clock.now + 60, initial_secs=1.0, max_secs=8.0,
                             retry_on=lambda e: isinstance(e, _Busy), clock=clock,
                             sleep=clock.sleep)(call, 21)
  assert got == 42 and calls == [21] * 4
  # Doubling from 1 s, each wait 50-100 % of its step.
  for wait, step in zip(clock.sleeps, [1.0, 2.0, 4.0]):
    assert step * 0.5 <= wait <= step


def test_until_deadline_raises_other_errors_at_once():
  clock = FakeClock(100.0)
  call, calls = _failing(1, error=KeyError)
  with pytest.raises(KeyError):
    retry.until_deadline(deadline=clock.now + 60, initial_secs=1.0, max_secs=8.0,
                         retry_on=lambda e: isinstance(e, _Busy), clock=clock,
                         sleep=clock.sleep)(call, 1)
  assert len(calls) == 1 and clock.sleeps == []


def test_until_deadline_gives_up_at_the_deadline_with_the_last_error():
  clock = FakeClock(100.0)
  call, calls = _failing(10_000)
  with pytest.raises(_Busy):
    retry.until_deadline(deadline=clock.now + 10, initial_secs=1.0, max_secs=4.0,
                         retry_on=lambda e: isinstance(e, _Busy), clock=clock,
                         sleep=clock.sleep)(call, 1)
  assert clock.now == pytest.approx(110.0)  # never slept past the deadline
  assert 4 <= len(calls) < 20


def test_until_deadline_polls_a_condition_and_returns_the_last_result_at_the_deadline():
  clock = FakeClock(100.0)
  seen = []

  def poll():
    seen.append(clock.now)
    return len(seen)

  got = retry.until_deadline(deadline=clock.now + 60, initial_secs=1.0, max_secs=1.0,
                             retry_while=lambda n: n < 3, clock=clock, sleep=clock.sleep)(poll)
  assert got == 3 and len(seen) == 3
  never = retry.until_deadline(deadline=clock.now + 5, initial_secs=1.0, max_secs=1.0,
                               retry_while=lambda n: True, clock=clock, sleep=clock.sleep)(poll)
  assert never == len(seen) and never > 3


def test_through_outages_waits_the_fixed_interval_and_reports_each_wait():
  clock = FakeClock(100.0)
  call, calls = _failing(4)
  reported = []
  got = retry.through_outages(retry_on=lambda e: isinstance(e, _Busy), sleep=clock.sleep,
                              before_sleep=lambda a: reported.append(str(a.outcome.exception()))
                              )(call, 5)
  assert got == 10 and len(calls) == 5
  assert clock.sleeps == [retry.OUTAGE_RETRY_SECS] * 4
  assert reported == ['attempt 1', 'attempt 2', 'attempt 3', 'attempt 4']


def test_through_outages_raises_a_refused_error_at_once():
  clock = FakeClock(100.0)
  call, calls = _failing(1, error=PermissionError)
  with pytest.raises(PermissionError):
    retry.through_outages(retry_on=lambda e: isinstance(e, _Busy), sleep=clock.sleep)(call, 1)
  assert len(calls) == 1 and clock.sleeps == []
