"""New topics and partitions while a streaming read runs: the discovery loop's pieces.

A streaming ``ReadKafkaChunks`` gets one more element beside its
``PartitionSpec``s: a ``WatchSpec``.  The reading splittable DoFn processes it
as the discovery loop: every ``discovery_interval_secs`` it asks the cluster
for the partitions of the selected topics (a pattern's new topics, new
partitions of every topic), and reads the partitions it found itself, from
the same DoFn, each with its own consumer.  Its restriction
(``WatchRestriction``) holds every partition the read covers and, per
partition found while running, the next offset to read, so a checkpointed
loop resumes where it was on any runner.

Why not Java KafkaIO's shape (``WatchForKafkaTopicPartitions`` -> Reshuffle ->
``ReadSourceDescriptors``, a discovery transform feeding the reading SDF):
the FnApiRunner hands a stage's output to the next stage only when the
producing stage is finished (``fn_runner._execute_bundle`` schedules every
output buffer at the end of time), so partitions found by a loop in another
stage would be read only after the job ends.  The loop must live in the
reading stage; residuals are the only way a stage feeds itself there.

Partitions found while running start at the group's committed offset, else
at the **earliest** offset whatever ``auto.offset.reset`` says: a topic
created after the job started holds only records produced since, all of them
wanted (Flink's KafkaSource does the same since FLIP-288).
"""

from __future__ import annotations

import collections
import logging
import time
import zlib
from typing import FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker

from transforms import metrics
from transforms.monitoring import Monitor
from transforms.kafka.config import KafkaSourceError, describe_servers
from transforms.kafka.partitions import matching_partitions, start_offsets
from transforms.kafka.topics import TopicSelector, new_partitions

__all__ = ['Discovery', 'WatchRestriction', 'WatchTracker', 'FoundPartition', 'TopicCheck',
           'check_topics', 'try_check_topics', 'shard_of', 'DEFAULT_DISCOVERY_INTERVAL_SECS',
           'DEFAULT_DISCOVERY_SHARDS']

_LOGGER = logging.getLogger(__name__)

DEFAULT_DISCOVERY_INTERVAL_SECS = 30.0
# Loops per streaming read: each reads the partitions found while running that hash to it, and
# the runner spreads the loops over its workers like the partitions themselves.
DEFAULT_DISCOVERY_SHARDS = 16


def shard_of(topic: str, partition: int, shards: int) -> int:
  """Which discovery loop reads a partition found while running (stable in every process)."""
  return zlib.crc32(f'{topic}\x00{partition}'.encode()) % max(1, shards)
# Partitions found while running start here when the group has no committed offset.
_LATE_RESET = 'earliest'


class Discovery(NamedTuple):
  """How a streaming read looks for new partitions (the reading DoFn's setting)."""
  selector: TopicSelector
  interval_secs: float
  timeout_secs: float


class FoundPartition(NamedTuple):
  """A partition found while running: where its read starts, and its end offset then."""
  topic: str
  partition: int
  start_offset: int
  end_offset: Optional[int]


class WatchRestriction(NamedTuple):
  """The discovery loop's restriction.

  Attributes:
    known: every ``(topic, partition)`` the read covers (from the start or
      found since).
    late: ``(topic, partition, next_offset)`` of each partition found while
      running: the loop reads them.
    next_check_epoch: when to ask the cluster again (wall time).
    done: the loop finished (drain, stop).
    draining: the runner drains (``truncate``): read no further, finish.
    gone: topics of ``known`` the cluster did not list at the last check
      (deleted), each reported once when it went and once if it comes back.
  """
  known: FrozenSet[Tuple[str, int]]
  late: Tuple[Tuple[str, int, int], ...] = ()
  next_check_epoch: float = 0.0
  done: bool = False
  gone: FrozenSet[str] = frozenset()
  draining: bool = False


class WatchTracker(RestrictionTracker):
  """Tracks a ``WatchRestriction``: a claim replaces the whole state.

  ``try_claim(new_state)`` records the loop's progress (new partitions, read
  positions, next check) and fails once the restriction was split off (a
  checkpoint) or finished.  Only checkpoints split it (``defer_remainder``):
  the primary is the finished part, the residual the current state.
  """

  def __init__(self, restriction: WatchRestriction):
    self._restriction = restriction
    self._split = False

  def current_restriction(self) -> WatchRestriction:
    return self._restriction

  def try_claim(self, position: WatchRestriction) -> bool:
    if self._split or self._restriction.done:
      return False
    self._restriction = position
    return True

  def try_split(self, fraction_of_remainder):
    if fraction_of_remainder > 0 or self._split or self._restriction.done:
      return None
    self._split = True
    return self._restriction._replace(done=True), self._restriction

  def check_done(self):
    if not (self._split or self._restriction.done):
      raise ValueError(f'the discovery loop neither finished nor deferred: {self._restriction}')

  def current_progress(self) -> RestrictionProgress:
    if self._split or self._restriction.done:
      return RestrictionProgress(completed=1, remaining=0)
    return RestrictionProgress(completed=0, remaining=1)

  def is_bounded(self) -> bool:
    return False


def _describe(found: Sequence[FoundPartition]) -> str:
  parts = []
  for f in found:
    lag = '' if f.end_offset is None else f' (lag {max(0, f.end_offset - f.start_offset)})'
    parts.append(f'[{f.partition}]@{f.start_offset}{lag}')
  return ', '.join(parts)


class TopicCheck(NamedTuple):
  """What one look at the cluster found: new partitions, and the known topics now gone."""
  found: List[FoundPartition]
  gone: FrozenSet[str]


def check_topics(consumer, config, discovery: Discovery, known: FrozenSet[Tuple[str, int]],
                 gone: FrozenSet[str] = frozenset(), monitor: Optional[Monitor] = None,
                 report: bool = True) -> TopicCheck:
  """Asks the cluster for partitions of the selected topics that are not ``known`` yet, and
  for the known topics it no longer lists (deleted).

  Each new partition starts at the group's committed offset, else at the
  earliest offset.  Logs one INFO line per topic (a new topic, or new
  partitions of a known one) and reports each partition's lag to the metrics
  and the monitor.  A topic that went since the last check (``gone``: those gone then) is
  reported once (WARNING): its partitions have nothing to read and keep their
  committed offsets.  One that came back (re-created with that name) is
  reported once (WARNING): its partitions are read on from the old topic's
  offsets, and the readers skip its records below them (they could load
  twice), saying so.

  Raises:
    KafkaSourceError: the cluster did not answer (the caller retries at the
      next interval).
  """
  current = matching_partitions(consumer, config, discovery.selector, discovery.timeout_secs)
  now_gone = frozenset(topic for topic, _ in known if topic not in current)
  if not report:  # another loop of the read says it
    return TopicCheck(_start_new_partitions(consumer, config, discovery, current, known, monitor,
                                            report), now_gone)
  for topic in sorted(now_gone - gone):
    _LOGGER.warning('Topic %s is no longer on %s (deleted?): its partitions have nothing to '
                    'read and keep their committed offsets; the other topics are read on',
                    topic, describe_servers(config))
  for topic in sorted(gone - now_gone):
    _LOGGER.warning('Topic %s is back on %s (re-created?): its partitions are read on from the '
                    'old topic\'s offsets; records below them are skipped (a re-created topic '
                    'is best given a new name)', topic, describe_servers(config))
  return TopicCheck(_start_new_partitions(consumer, config, discovery, current, known, monitor,
                                          report), now_gone)


def _start_new_partitions(consumer, config, discovery: Discovery, current,
                          known, monitor: Optional[Monitor] = None,
                          report: bool = True) -> List[FoundPartition]:
  new = new_partitions(current, known)
  if not new:
    return []
  found = [FoundPartition(*item) for item in start_offsets(
      consumer, config, new, _LATE_RESET, True, discovery.timeout_secs)]
  by_topic = collections.defaultdict(list)
  for f in found:
    by_topic[f.topic].append(f)
  known_topics = {topic for topic, _ in known}
  for topic, partitions in sorted(by_topic.items()) if report else ():
    if topic in known_topics:
      _LOGGER.info('Discovered %d new partition(s) of topic %s on %s: %s', len(partitions), topic,
                   describe_servers(config), _describe(partitions))
    else:
      _LOGGER.info('Discovered topic %s (%s) on %s: %d partition(s): %s', topic,
                   discovery.selector.describe(), describe_servers(config), len(partitions),
                   _describe(partitions))
  for f in found:
    if f.end_offset is not None and f.end_offset >= 0:
      lag = max(0, f.end_offset - f.start_offset)
      metrics.KAFKA_LAG.labels(f.topic, str(f.partition)).set(lag)
      if monitor is not None:
        monitor.partition_progress(f.topic, f.partition, lag=lag, high=f.end_offset)
  return found


def try_check_topics(consumer, config, discovery: Discovery, known: FrozenSet[Tuple[str, int]],
                     gone: FrozenSet[str] = frozenset(), monitor: Optional[Monitor] = None,
                     report: bool = True) -> TopicCheck:
  """``check_topics``, but a failure is logged (WARNING) and finds nothing (``gone`` stays):
  the next interval asks again, the read goes on."""
  started = time.monotonic()
  try:
    return check_topics(consumer, config, discovery, known, gone, monitor, report)
  except KafkaSourceError as error:
    _LOGGER.warning('Looking for new partitions (%s) failed after %.1fs; trying again in %ss: %s',
                    discovery.selector.describe(), time.monotonic() - started,
                    discovery.interval_secs, error)
    return TopicCheck([], gone)
