"""Stall bookkeeping on a fake clock: when a table or a partition is stalled, and when not."""

import logging

import pytest

from tests.fakes import FakeClock
from transforms.monitoring import DEFAULT_MIN_STALL_SECS, Monitor

pytestmark = pytest.mark.unit


def _errors(caplog):
  return [r for r in caplog.records if r.levelno == logging.ERROR]


def test_a_table_with_pending_rows_and_no_load_stalls_after_its_window_once_and_clears(caplog):
  clock = FakeClock()
  monitor = Monitor(clock, stall_timeout_secs=60)
  monitor.table_pending('db.t', 10)
  clock.now += 59
  monitor.check()
  assert monitor.stalled_tables() == []
  monitor.load_failed('db.t', 'BE down')
  clock.now += 1
  with caplog.at_level(logging.INFO, logger='transforms.monitoring'):
    monitor.check()
    clock.now += 30
    monitor.check()  # still stalled: no second ERROR line
    errors = _errors(caplog)
    assert len(errors) == 1
    assert 'db.t' in errors[0].getMessage() and 'BE down' in errors[0].getMessage()
    assert monitor.stalled_tables() == ['db.t']
    monitor.load_succeeded('db.t')
    monitor.table_pending('db.t', 0)
    monitor.check()
  assert monitor.stalled_tables() == []
  assert any('stall cleared' in r.getMessage() for r in caplog.records)


def test_an_idle_table_without_pending_rows_never_stalls():
  clock = FakeClock()
  monitor = Monitor(clock, stall_timeout_secs=60)
  monitor.table_pending('db.t', 5)
  monitor.load_succeeded('db.t')
  monitor.table_pending('db.t', 0)
  monitor.load_succeeded('db.t')
  clock.now += 10_000
  monitor.check()
  assert monitor.stalled_tables() == []


def test_the_default_window_is_three_batch_intervals_but_at_least_five_minutes():
  monitor = Monitor(FakeClock())
  monitor.table_interval('db.fast', 2)
  monitor.table_interval('db.slow', 600)
  assert monitor.window('db.fast') == DEFAULT_MIN_STALL_SECS == 300
  assert monitor.window('db.slow') == 1800


def test_a_partition_stalls_when_its_offset_stands_still_while_its_lag_grows():
  clock = FakeClock()
  monitor = Monitor(clock, stall_timeout_secs=60)
  monitor.partition_progress('t', 0, committed=100, lag=5)
  monitor.partition_progress('t', 1, committed=100, lag=5)
  clock.now += 61
  monitor.partition_progress('t', 0, lag=500)   # lag grew, nothing committed
  monitor.partition_progress('t', 1, lag=5)     # quiet: nothing to commit
  monitor.check()
  assert monitor.stalled_partitions() == [('t', 0)]
  monitor.partition_progress('t', 0, committed=400)
  monitor.check()
  assert monitor.stalled_partitions() == []
