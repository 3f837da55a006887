"""The mock-cluster fixture: reachable from subprocesses, offsets helpers."""

import os
import subprocess
import sys

from tests.fixtures.kafka import values_of
import pytest

pytestmark = pytest.mark.transform

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

_CHILD = '''
import sys
import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from transforms import kafka
from transforms.types import OffsetAck
servers, topic, group = sys.argv[1:4]
config = {"bootstrap.servers": servers, "group.id": group,
          "auto.offset.reset": "earliest"}
with beam.Pipeline(runner=FnApiRunner()) as p:
  reads = (p | kafka.ReadKafkaChunks(config, [topic], stop_at_end=True)
           | beam.Map(kafka.chunk_read_of))
  acks = reads | beam.Map(lambda c: OffsetAck(
      c.topic, c.partition, tuple(range(c.first_offset, c.next_offset))))
  _ = (reads, acks) | beam.Flatten() | kafka.CommitOffsets(config)
'''


def test_pipeline_in_a_subprocess_reads_and_commits(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(200))
  group = 'subprocess-group'
  out = subprocess.run(
      [sys.executable, '-c', _CHILD, kafka_cluster.bootstrap_servers, topic,
       group], cwd=_REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert kafka_cluster.committed(group, topic) == {0: 50, 1: 50, 2: 50, 3: 50}


def test_topics_auto_create_with_four_partitions(kafka_cluster):
  topic = kafka_cluster.unique_topic()
  kafka_cluster.produce(topic, values_of(8))
  assert kafka_cluster.end_offsets(topic) == {0: 2, 1: 2, 2: 2, 3: 2}
  assert kafka_cluster.committed('nobody', topic) == {}
  kafka_cluster.commit('somebody', topic, {1: 1})
  assert kafka_cluster.committed('somebody', topic) == {1: 1}


def test_a_restartable_cluster_s_broker_goes_down_and_comes_back():
  from confluent_kafka import Producer  # pylint: disable=import-outside-toplevel
  from devtools.local_kafka import KafkaCluster  # pylint: disable=import-outside-toplevel
  cluster = KafkaCluster(restartable=True)
  try:
    topic = cluster.unique_topic()
    cluster.produce(topic, values_of(8))
    producer = Producer({'bootstrap.servers': cluster.bootstrap_servers})
    leader = producer.list_topics(topic, timeout=10).topics[topic].partitions[0].leader
    cluster.broker_down(leader)
    producer.produce(topic, b'while down', partition=0)
    assert producer.flush(2) == 1  # its leader refuses connections: not delivered
    cluster.broker_up(leader)
    assert producer.flush(30) == 0
    assert cluster.end_offsets(topic)[0] == 3  # 2 of the 8, and the one held back
    del producer  # before the cluster goes: it would retry its connections, logging each
  finally:
    cluster.close()
  with pytest.raises(RuntimeError, match='not made restartable'):
    KafkaCluster().broker_down(1)
