"""RunnerElection on the local Kafka: one process of a job runs truncates and drops, and
another takes over when it leaves."""

import pytest

from tests.stream_load_emulator.helpers import wait_for
from transforms.schema.ddl_runner import RunnerElection, acquire_election, release_election

pytestmark = pytest.mark.transform


def _runner(election):
  with election.running() as runner:
    return runner


def _topic(kafka_cluster):
  topic = kafka_cluster.unique_topic('dbz')
  kafka_cluster.produce(topic, [b'{}'], partition=0)
  return topic


def test_one_member_is_elected_and_another_takes_over_when_it_leaves(kafka_cluster):
  topic = _topic(kafka_cluster)
  config = kafka_cluster.consumer_config('g-elect')
  first, second = RunnerElection(config, topic), RunnerElection(config, topic)
  first.start()
  second.start()
  try:
    assert first.wait_decided(30) and second.wait_decided(30)
    wait_for(lambda: [_runner(first), _runner(second)].count(True) == 1, timeout=30,
             what='one runner of two members')
    runner, other = (first, second) if _runner(first) else (second, first)
    runner.close()  # leaves the group: the other is assigned the first partition
    wait_for(lambda: _runner(other), timeout=30, what='the other member to take over')
  finally:
    first.close()
    second.close()


def test_a_process_shares_one_membership_and_the_last_user_leaves(kafka_cluster):
  topic = _topic(kafka_cluster)
  config = kafka_cluster.consumer_config('g-share')
  one = acquire_election(config, topic)
  two = acquire_election(config, topic)
  assert one is two
  assert one.wait_decided(30) and _runner(one)  # alone in the group: the runner
  release_election(two)
  assert _runner(one)  # still a member
  release_election(one)
  again = acquire_election(config, topic)
  try:
    assert again is not one  # the first left: a new membership
  finally:
    release_election(again)
