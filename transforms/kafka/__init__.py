"""Kafka for the loader: a native reader, the offset committer, drain requests.

One job per module: ``config`` (client settings and errors), ``topics``
(topic names or a pattern, never an internal topic), ``partitions`` (what to
read, where to start), ``discovery`` (new topics and partitions while a
streaming read runs), ``restriction`` (a partition's offset range and its
durable checkpoints), ``consumers`` (a process's consumers and read
positions), ``read_fn`` and ``watch_fn`` (the reading splittable DoFn),
``reader`` (``ReadKafkaChunks``, ``ReadFromKafka``), ``offsets`` (the pure
``OffsetTracker``), ``progress`` (a process's offset bookkeeping and
commits), ``commit`` (``CommitOffsets``), ``control`` (drain requests through
Kafka).
"""

from transforms.kafka.commit import CommitOffsets
from transforms.kafka.config import (KafkaConfigError, KafkaSourceError, KafkaUnreachableError,
                                     UnknownTopicError)
from transforms.kafka.control import KafkaStopChannel
from transforms.kafka.offsets import OffsetTracker
from transforms.kafka.reader import ReadFromKafka, ReadKafkaChunks, chunk_read_of

__all__ = [
    'CommitOffsets',
    'KafkaConfigError',
    'KafkaSourceError',
    'KafkaStopChannel',
    'KafkaUnreachableError',
    'OffsetTracker',
    'ReadFromKafka',
    'ReadKafkaChunks',
    'UnknownTopicError',
    'chunk_read_of',
]
