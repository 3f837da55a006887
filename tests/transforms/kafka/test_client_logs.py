"""Kafka client errors are logged once per window with a count, not hundreds of times."""

import logging

import pytest

from transforms.kafka.config import RepeatedMessageFilter

pytestmark = pytest.mark.unit


def _record(message, *args):
  return logging.LogRecord('transforms.kafka.config', logging.WARNING, __file__, 1, message, args,
                           None)


def test_a_repeated_message_passes_once_per_window_and_then_says_how_many_it_stood_for():
  now = [100.0]
  repeated = RepeatedMessageFilter(window_secs=60, clock=lambda: now[0])
  down = 'FAIL [rdkafka#consumer-%d] [thrd:b1]: b1: Connect failed (after %dms in state CONNECT)'
  assert repeated.filter(_record(down, 1, 0))
  passed = [repeated.filter(_record(down, n, n)) for n in range(2, 300)]
  assert not any(passed)  # other clients, other durations: the same message
  assert repeated.filter(_record('Kafka client error: %s', 'all brokers down'))  # another one
  now[0] += 61
  record = _record(down, 7, 3)
  assert repeated.filter(record)
  assert record.getMessage().endswith('(and 298 more like it in the last 60 s)')
  now[0] += 1
  assert not repeated.filter(_record(down, 8, 0))


def test_messages_about_different_brokers_are_different_messages():
  repeated = RepeatedMessageFilter(window_secs=60, clock=lambda: 0.0)
  assert repeated.filter(_record('Connect to 10.0.0.1:9092 failed'))
  assert repeated.filter(_record('Connect to 10.0.0.2:9092 failed'))
