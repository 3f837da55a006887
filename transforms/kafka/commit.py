"""``CommitOffsets``: commits consumer-group offsets once every row before them is finished.

Per (topic, partition) the run's ``PartitionProgress`` learns of each chunk
read and of each finished row (loaded, or dead-lettered) and commits the end
of the longest prefix of complete chunks -- asynchronously as it moves, and
synchronously when the run's runtime closes.  A crash re-reads whatever was
not committed.  It runs in the process that read the rows, fused behind the
reader on every runner: no shuffle, no keyed state.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import metrics
from transforms.kafka import progress as _progress
from transforms.kafka.config import KafkaConfigError, reader_config
from transforms.runtime import RunContext, acquire, release
from transforms.types import ChunkRead, OffsetAck

__all__ = ['CommitOffsets']

_LOGGER = logging.getLogger(__name__)


class _CommitOffsetsFn(beam.DoFn):
  """Feeds chunk reads and acks to the run's ``PartitionProgress``; emits each commit."""

  def __init__(self, config: Dict[str, Any], context: RunContext):
    self._config = config
    self._context = context
    self._chunks = Metrics.counter(metrics.NAMESPACE, 'chunks_tracked')
    self._acks = Metrics.counter(metrics.NAMESPACE, 'acked_offsets')
    self._commits = Metrics.counter(metrics.NAMESPACE, 'offset_commits')

  def setup(self):
    self._runtime = acquire(self._context)
    runtime = self._runtime
    self._progress = runtime.shared(_progress.SHARED_NAME,
                                    lambda: _progress.PartitionProgress(self._config,
                                                                        runtime.monitor))

  def teardown(self):
    release(self._runtime)

  def process(self, item):
    try:
      if isinstance(item, ChunkRead):
        self._chunks.inc()
        position = self._progress.add_chunk(item.topic, item.partition, item.first_offset,
                                            item.next_offset, item.count)
      elif isinstance(item, OffsetAck):
        self._acks.inc(len(item.offsets))
        position = self._progress.ack(item.topic, item.partition, item.offsets)
      else:
        raise TypeError(f'CommitOffsets takes ChunkRead and OffsetAck, got {type(item)!r}')
    except Exception as error:
      self._runtime.fail(error)
      raise
    if position is not None:
      self._commits.inc()
      yield item.topic, item.partition, position


class CommitOffsets(beam.PTransform):
  """Commits consumer-group offsets once every row before them is finished.

  The input is ``ChunkRead``s (one per chunk read; see
  :func:`chunk_read_of`) and ``OffsetAck``s (one ack unit per offset per
  finished row: loaded, or dead-lettered), as one PCollection or as a
  tuple/list of PCollections: each is committed on its own, so that it fuses
  with its producer (no ``Flatten``: the FnApiRunner hands a multi-input
  Flatten's output on only when every input is finished).  Per (topic,
  partition) it commits the end of the longest prefix of complete chunks; a
  partition's offset never passes an incomplete chunk, nor a chunk that has
  not arrived yet.  The bookkeeping is the run's (``context``), shared with
  the reader of the same run in this process.

  Returns:
    A PCollection of ``(topic, partition, offset)``, one per commit (a tuple
    of them for several inputs).
  """

  def __init__(self, consumer_config: Dict[str, Any], group_id: Optional[str] = None, *,
               context: Optional[RunContext] = None):
    """Initializes the committer.

    Args:
      consumer_config: librdkafka settings (the reader's config works).
      group_id: the consumer group; defaults to the config's ``group.id``.
      context: the run (the reader's), whose runtime holds the bookkeeping;
        default: a run of its own.

    Raises:
      KafkaConfigError: no group id or no bootstrap servers.
    """
    super().__init__()
    config = dict(consumer_config)
    if group_id:
      config['group.id'] = group_id
    self._config = reader_config(config)
    self._context = context or RunContext()

  def expand(self, inputs):
    if isinstance(inputs, beam.PCollection):
      inputs = (inputs,)
    inputs = tuple(inputs)
    if not inputs:
      raise KafkaConfigError('CommitOffsets needs at least one input')
    commits = tuple(
        pcoll | f'Commit{i}' >> beam.ParDo(_CommitOffsetsFn(self._config, self._context))
        .with_output_types(Tuple[str, int, int])
        for i, pcoll in enumerate(inputs))
    return commits[0] if len(commits) == 1 else commits
