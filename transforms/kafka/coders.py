"""Coders for Kafka records and chunks: one pickle of plain tuples per element.

Chunks cross stage boundaries on portable runners; a ``NamedTuple`` pickled
field by field, or Beam's default coder sampling a whole chunk to estimate its
size, cost more than the work done on the records.  Importing this module
registers the coders for ``KafkaRecord`` and ``KafkaChunk``.
"""

from __future__ import annotations

import pickle

from apache_beam import coders

from transforms.types import KafkaChunk, KafkaRecord

__all__ = ['KafkaRecordCoder', 'KafkaChunkCoder']

_new_tuple = tuple.__new__


class KafkaRecordCoder(coders.Coder):
  """Pickles a ``KafkaRecord`` as a plain tuple (no NamedTuple overhead)."""

  def encode(self, value):
    return pickle.dumps(tuple(value), pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded):
    return _new_tuple(KafkaRecord, pickle.loads(encoded))

  def is_deterministic(self):
    return False

  def estimate_size(self, value):
    return 48 + len(value.topic) + len(value.key or b'') + len(value.value or
                                                                 b'')

  def to_type_hint(self):
    return KafkaRecord


class KafkaChunkCoder(coders.Coder):
  """Encodes a ``KafkaChunk`` as one pickle of plain tuples.

  Its ``estimate_size`` is cheap: the SDK samples output sizes (the first
  elements of every bundle) and the default coder would pickle the whole
  chunk just to measure it -- a millisecond per 1000-record chunk.
  """

  def encode(self, value):
    return pickle.dumps(
        (value.topic, value.partition, value.first_offset, value.next_offset,
         [(r.offset, r.key, r.value, r.timestamp_ms, r.headers)
          for r in value.records]), pickle.HIGHEST_PROTOCOL)

  def decode(self, encoded):
    topic, partition, first, next_offset, rows = pickle.loads(encoded)
    return _new_tuple(KafkaChunk, (
        topic, partition, first, next_offset,
        [_new_tuple(KafkaRecord, (topic, partition) + row) for row in rows]))

  def is_deterministic(self):
    return False

  def estimate_size(self, value):
    records = value.records
    if not records:
      return 32
    sample = records[:8]
    per_record = sum(
        40 + len(r.key or b'') + len(r.value or b'') for r in sample) / len(
            sample)
    return int(32 + len(value.topic) + per_record * len(records))

  def to_type_hint(self):
    return KafkaChunk


coders.registry.register_coder(KafkaRecord, KafkaRecordCoder)
coders.registry.register_coder(KafkaChunk, KafkaChunkCoder)

