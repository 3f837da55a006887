"""Kafka for the loader: a native reader, the offset committer and Beam's KafkaIO adapter.

One job per module: ``config`` (client settings and errors), ``topics``
(topic names or a pattern, never an internal topic), ``partitions`` (what to
read, where to start), ``discovery`` (new topics and partitions while a
streaming read runs), ``reader`` (``ReadKafkaChunks``, ``ReadFromKafka``),
``stop`` (stopping a local read), ``offsets`` (the pure ``OffsetTracker``),
``commit`` (``CommitOffsets``), ``xlang`` (Java KafkaIO).
"""

from transforms.kafka.commit import CommitOffsets
from transforms.kafka.config import (KafkaConfigError, KafkaSourceError, KafkaUnreachableError,
                                     UnknownTopicError)
from transforms.kafka.offsets import OffsetTracker
from transforms.kafka.reader import ReadFromKafka, ReadKafkaChunks, chunk_read_of
from transforms.kafka.stop import request_stop
from transforms.kafka.xlang import ReadKafkaChunksXlang

__all__ = [
    'CommitOffsets',
    'KafkaConfigError',
    'KafkaSourceError',
    'KafkaUnreachableError',
    'OffsetTracker',
    'ReadFromKafka',
    'ReadKafkaChunks',
    'ReadKafkaChunksXlang',
    'UnknownTopicError',
    'chunk_read_of',
    'request_stop',
]
