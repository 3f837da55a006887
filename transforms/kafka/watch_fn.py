"""The streaming reader: partitions without end, and the discovery loops that find new ones.

``ReadUnboundedFn`` reads ``PartitionSpec``s as ``ReadPartitionFn`` does, and
runs each ``WatchSpec`` element as a discovery loop (see ``discovery``): every
``discovery.interval_secs`` the loop asks the cluster for new partitions and
reads, from inside its own element, those whose ``shard_of`` is its shard.
A streaming read has several loops (``WatchSpec.shards``), spread over the
runner's workers like the partitions, so partitions found while running are
read by many workers, not one.  Their positions in the loop's restriction are
durable offsets, as for any partition.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Tuple

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.kafka.config import new_consumer
from transforms.kafka.consumers import close_quietly
from transforms.kafka.discovery import Discovery, WatchRestriction, shard_of, try_check_topics
from transforms.kafka.partitions import UNBOUNDED_STOP_OFFSET, PartitionSpec, WatchSpec
from transforms.kafka.read_fn import IDLE_WATERMARK_LAG_SECS, Outcome, ReadPartitionFn
from transforms.kafka.restriction import PartitionOffsetTracker, PartitionRestrictionProvider

__all__ = ['ReadUnboundedFn', 'watch_source']

_LOGGER = logging.getLogger('transforms.kafka.reader')

# A loop without partitions of its own comes back this often (to see a drain, or its next look).
_IDLE_LOOP_SECS = 1.0
_FINISH_RECHECK_SECS = 0.05


class _LateTracker:
  """The tracker of a partition a discovery loop reads: an unbounded range from its position.

  It stands in for the runner's tracker view inside the loop's element; a
  deferral is the loop's own (it defers after reading every such partition).
  """

  def __init__(self, start: int):
    self._tracker = PartitionOffsetTracker(OffsetRange(start, UNBOUNDED_STOP_OFFSET))

  def current_restriction(self):
    return self._tracker.current_restriction()

  def try_claim(self, position) -> bool:
    return self._tracker.try_claim(position)

  def defer_remainder(self, deferred_time=None):  # pylint: disable=unused-argument
    pass


def watch_source(spec: WatchSpec) -> Tuple[str, int]:
  """The runtime's name for a discovery loop (it is a source that ends, like a partition)."""
  return ('', -1 - spec.shard)


class ReadUnboundedFn(ReadPartitionFn):
  """Reads partitions without end (``stop_at_end=False``) and runs the discovery loops."""

  def __init__(self, *args, discovery: Optional[Discovery] = None):
    super().__init__(*args)
    self._discovery = discovery

  def setup(self):
    super().setup()
    self._discovery_consumer = None
    self._late_watermarks: Dict[Tuple[str, int], ManualWatermarkEstimator] = {}

  def teardown(self):
    consumer, self._discovery_consumer = getattr(self, '_discovery_consumer', None), None
    if consumer is not None:
      close_quietly(consumer)
    super().teardown()

  @beam.DoFn.unbounded_per_element()
  def process(self, spec: PartitionSpec,
              tracker=beam.DoFn.RestrictionParam(PartitionRestrictionProvider()),
              watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
                  ManualWatermarkEstimator.default_provider())):
    if not isinstance(spec, WatchSpec):
      yield from super().process(spec, tracker, watermark_estimator)
      return
    try:
      yield from self._watch(spec, tracker, watermark_estimator)
    except Exception as error:
      self._runtime.fail(error)
      raise

  def _watch(self, spec: WatchSpec, tracker, watermark_estimator):
    """One turn of a discovery loop: look for partitions when due, read the loop's own."""
    state: WatchRestriction = tracker.current_restriction()
    runtime = self._runtime
    source = watch_source(spec)
    runtime.sources.reading(source)
    stopping = (runtime.stop_requested() or state.draining or
                spec.stop_at_epoch_secs is not None and time.time() >= spec.stop_at_epoch_secs)
    now = time.time()
    if not stopping and now >= state.next_check_epoch:
      found, gone = try_check_topics(self._metadata_consumer(), self._config, self._discovery,
                                     state.known, state.gone, runtime.monitor,
                                     report=spec.shard == 0)
      mine = [f for f in found if shard_of(f.topic, f.partition, spec.shards) == spec.shard]
      state = state._replace(
          known=state.known | {(f.topic, f.partition) for f in found},
          late=state.late + tuple((f.topic, f.partition, f.start_offset) for f in mine),
          next_check_epoch=now + self._discovery.interval_secs, gone=gone)
      if not tracker.try_claim(state):
        return
    if self._bundle_deadline is None:
      self._bundle_deadline = time.monotonic() + self._max_bundle_secs
    late = []
    finished = True
    delays = []
    for topic, partition, position in state.late:
      inner = _LateTracker(position)
      estimator = self._late_watermarks.get((topic, partition))
      if estimator is None:
        estimator = ManualWatermarkEstimator(watermark_estimator.current_watermark())
        self._late_watermarks[(topic, partition)] = estimator
      outcome = Outcome()
      yield from self.read(
          PartitionSpec(topic, partition, position, UNBOUNDED_STOP_OFFSET,
                        spec.stop_at_epoch_secs, len(state.known)),
          inner, estimator, outcome, stopping=stopping)
      finished = finished and outcome.action == Outcome.DONE
      delays.append(outcome.delay_secs)
      resume = self.checkpoint_at(topic, partition)
      late.append((topic, partition, position if resume is None else max(position, resume)))
    state = state._replace(late=tuple(late))
    if stopping:
      runtime.sources.ended(source)
      if finished:
        _LOGGER.info('Stopping discovery loop %d of %d (%d partitions found while running: '
                     '%s)', spec.shard + 1, spec.shards, len(state.late),
                     ', '.join(f'{t}[{p}]@{o}' for t, p, o in state.late) or '-')
        tracker.try_claim(state._replace(done=True))
        if self._durable and runtime.stop_requested():
          for topic, partition, _ in state.late:
            self._progress.commit_now(topic, partition)
        runtime.report_done(source)  # the loop's end covers the partitions it read
        return
    if not tracker.try_claim(state):
      return
    self._advance_watch_watermark(watermark_estimator, state)
    if stopping:
      delay = _FINISH_RECHECK_SECS
    elif state.late:
      delay = min(d for d in delays if d is not None) if any(
          d is not None for d in delays) else _IDLE_LOOP_SECS
    else:
      delay = max(0.0, min(_IDLE_LOOP_SECS, state.next_check_epoch - time.time()))
      if not spec.known:
        # Alone in the reading stage (a pattern that matches nothing yet): wait here, as idle
        # partitions do, instead of spinning through empty bundles.
        wait = min(self._bundle_wait_secs, delay)
        if wait > 0:
          time.sleep(wait)
          self._bundle_wait_secs -= wait
          delay -= wait
    tracker.defer_remainder(Duration(seconds=delay))

  def _advance_watch_watermark(self, watermark_estimator, state: WatchRestriction) -> None:
    """The loop's watermark: the oldest of its partitions', or wall time when it reads none."""
    marks = [self._late_watermarks.get((t, p)) for t, p, _ in state.late]
    marks = [m.current_watermark() for m in marks if m is not None]
    if state.late and (len(marks) < len(state.late) or any(m is None for m in marks)):
      return
    candidate = (min(marks) if marks else
                 Timestamp.now() - Duration(seconds=IDLE_WATERMARK_LAG_SECS))
    current = watermark_estimator.current_watermark()
    if current is None or candidate > current:
      watermark_estimator.set_watermark(candidate)

  def _metadata_consumer(self):
    if self._discovery_consumer is None:
      self._discovery_consumer = new_consumer(self._config)
    return self._discovery_consumer
