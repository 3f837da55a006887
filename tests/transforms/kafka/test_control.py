"""The drain channel on the journal topic: requests, watchers, done reports (mock Kafka)."""

import threading
import time

import pytest

from transforms.kafka.control import KafkaStopChannel, is_control_key

pytestmark = pytest.mark.transform

_WAIT_SECS = 30


def _channel(kafka_cluster, topic, group='loader'):
  return KafkaStopChannel(kafka_cluster.consumer_config(group), topic)


def test_a_watcher_sees_requests_made_after_its_run_started_and_not_older_ones(kafka_cluster):
  topic = kafka_cluster.unique_topic('control')
  channel = _channel(kafka_cluster, topic)
  channel.request('an old request, from a run before this one')
  run_channel = channel.starting_now()
  seen, called = [], threading.Event()

  def on_stop(reason):
    seen.append(reason)
    called.set()

  stop = run_channel.watch(on_stop, since_ms=int(time.time() * 1000))
  try:
    channel.request('operator asked')
    assert called.wait(_WAIT_SECS), 'the watcher never saw the request'
  finally:
    stop()
  assert len(seen) == 1 and seen[0].startswith('operator asked'), seen


def test_a_request_for_another_group_is_not_seen(kafka_cluster):
  topic = kafka_cluster.unique_topic('control')
  _channel(kafka_cluster, topic).request('creates the topic')
  channel = _channel(kafka_cluster, topic, group='mine').starting_now()
  other = _channel(kafka_cluster, topic, group='theirs').starting_now()
  seen = []
  stop = channel.watch(seen.append, since_ms=int(time.time() * 1000))
  try:
    other.request('not for you')
    # The other group's done report is written after its request: once the waiter has read
    # past it (the report arrives), the request before it has been read too.
    other.report_done('run-x', [('t', 0)])
    assert other.await_done('run-x', [('t', 0)], since_ms=0, timeout_secs=_WAIT_SECS) == set()
    _channel(kafka_cluster, topic, group='mine').request('for me')
    deadline = time.monotonic() + _WAIT_SECS
    while not seen and time.monotonic() < deadline:
      threading.Event().wait(0.05)
  finally:
    stop()
  assert [reason.split(' (')[0] for reason in seen] == ['for me']


def test_await_done_returns_the_sources_not_yet_reported_by_this_run(kafka_cluster):
  topic = kafka_cluster.unique_topic('control')
  _channel(kafka_cluster, topic).request('creates the topic')
  channel = _channel(kafka_cluster, topic).starting_now()  # as a launcher does at its start
  started = int(time.time() * 1000)
  channel.report_done('run-1', [('orders', 0), ('orders', 1)])
  channel.report_done('run-0', [('orders', 2)])  # another run of the group: does not count
  missing = channel.await_done('run-1', [('orders', 0), ('orders', 1), ('orders', 2)],
                               since_ms=started, timeout_secs=3)
  assert missing == {('orders', 2)}
  channel.report_done('run-1', [('orders', 2)])
  assert channel.await_done('run-1', [('orders', 0), ('orders', 1), ('orders', 2)],
                            since_ms=started, timeout_secs=_WAIT_SECS) == set()


def test_stopping_a_watcher_returns_once_its_consumer_is_closed(kafka_cluster):
  """A run that ends stops its watcher: no thread (and no Kafka client) outlives it."""
  topic = kafka_cluster.unique_topic('control')
  channel = _channel(kafka_cluster, topic)
  channel.request('creates the topic')
  before = {thread.ident for thread in threading.enumerate()}
  stop = channel.starting_now().watch(lambda reason: None, since_ms=int(time.time() * 1000))
  watchers = [thread for thread in threading.enumerate() if thread.ident not in before]
  assert watchers, 'watch() started no thread'
  stop()
  assert not any(thread.is_alive() for thread in watchers)


def test_control_records_are_told_apart_from_journal_entries():
  assert is_control_key(b'drain:loader') and is_control_key(b'done:loader')
  assert not is_control_key(b'demo.events|label-1') and not is_control_key(None)
