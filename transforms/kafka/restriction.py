"""The reading splittable DoFn's restriction: one offset range per partition, checkpointed durable.

A partition's restriction is an ``OffsetRange``; its tracker claims whole
chunks (``try_claim(last_offset)``) and is never split up front nor
dynamically (a partition is read by one reader, in order).  What makes it
ours is where a checkpoint puts the remainder: not at the read position but
at the partition's *durable* offset -- the end of the rows already loaded or
dead-lettered, which the reader passes in as a ``Durable`` claim.  Rows read
but still waiting in a batch are held in memory only; if the process dies,
a runner restoring the checkpoint reads them again, and the load journal
skips whatever of them was loaded meanwhile.  While the process lives, its
reader continues from its own read position (see ``reader``).

``truncate`` (a runner's drain, e.g. Dataflow's) marks the range draining:
the reader stops reading it and finishes once its rows are durable.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms import core

from transforms.kafka.discovery import WatchRestriction, WatchTracker
from transforms.kafka.partitions import UNBOUNDED_STOP_OFFSET, PartitionSpec, WatchSpec

__all__ = ['Durable', 'DrainingRange', 'PartitionOffsetTracker', 'PartitionRestrictionProvider']


class Durable(NamedTuple):
  """A claim that claims nothing: every row before ``offset`` is finished (a checkpoint may resume
  there)."""
  offset: int


class DrainingRange(OffsetRange):
  """An ``OffsetRange`` the runner asked to drain (``truncate``): read no further, finish."""


def _same_kind(like: OffsetRange, start: int, stop: int) -> OffsetRange:
  return (DrainingRange if isinstance(like, DrainingRange) else OffsetRange)(start, stop)


class PartitionOffsetTracker(OffsetRestrictionTracker):
  """An offset tracker that claims whole chunks and checkpoints at the durable offset.

  ``try_claim(offset)`` claims every offset up to and including ``offset``.
  A failed claim (at or past the stop: the bounded end, or a checkpoint)
  is not recorded, so the reader can trim its chunk and claim a smaller
  offset; it marks the restriction exhausted, which ``check_done`` accepts
  besides a fully claimed range (the last offsets of a partition may be
  transaction markers that are never returned as records).

  ``try_claim(Durable(offset))`` records the durable offset; ``try_split(0)``
  (a checkpoint) splits there: the residual ``[durable, stop)`` is what a
  restore reads again.  Fractional splits are refused.
  """

  def __init__(self, offset_range: OffsetRange):
    super().__init__(offset_range)
    self._exhausted = False
    self._checkpointed = False
    self._durable = offset_range.start

  def try_claim(self, position: Union[int, Durable]):
    if isinstance(position, Durable):
      self._durable = max(self._range.start, min(position.offset, self._range.stop))
      return True
    if position < self._range.start:
      raise ValueError(f'cannot claim {position} before {self._range}')
    if self._last_claim_attempt is not None and position <= self._last_claim_attempt:
      raise ValueError(f'claims must increase: {position} after {self._last_claim_attempt}')
    if position < self._range.stop:
      self._last_claim_attempt = position
      self._current_position = position
      return True
    self._exhausted = True
    return False

  def check_done(self):
    # Checkpointed: the primary's rows were read in this or earlier calls (the reader's
    # position in this process runs ahead of what is durable).
    if self._exhausted or self._checkpointed or self._range.start >= self._range.stop:
      return
    if self._last_claim_attempt is None or self._last_claim_attempt < self._range.stop - 1:
      raise ValueError(f'the range {self._range} was not read to its end (last claim: '
                       f'{self._last_claim_attempt})')

  def try_split(self, fraction_of_remainder):
    if fraction_of_remainder > 0 or self._exhausted:
      return None  # a partition is never split: one reader, in order
    start, stop = self._range.start, self._range.stop
    at = max(start, min(self._durable, stop))
    if at >= stop and stop < UNBOUNDED_STOP_OFFSET:
      self._exhausted = True  # everything is durable: nothing remains
      return None
    self._range = _same_kind(self._range, start, at)
    self._checkpointed = True
    return self._range, _same_kind(self._range, at, stop)

  def is_bounded(self):
    return self._range.stop < UNBOUNDED_STOP_OFFSET

  @property
  def draining(self) -> bool:
    return isinstance(self._range, DrainingRange)


class PartitionRestrictionProvider(core.RestrictionProvider):
  """One ``OffsetRange`` per partition; the discovery loop's element has a ``WatchRestriction``."""

  def initial_restriction(self, element: PartitionSpec):
    if isinstance(element, WatchSpec):
      return WatchRestriction(frozenset(element.known))
    return OffsetRange(element.start_offset, max(element.start_offset, element.stop_offset))

  def create_tracker(self, restriction):
    if isinstance(restriction, WatchRestriction):
      return WatchTracker(restriction)
    return PartitionOffsetTracker(restriction)

  def split(self, element, restriction):
    yield restriction

  def restriction_size(self, element, restriction):
    if isinstance(restriction, WatchRestriction) or restriction.stop >= UNBOUNDED_STOP_OFFSET:
      return 1  # backlog unknown
    return restriction.size()

  def truncate(self, element, restriction):
    # A runner's drain: the reader stops reading and finishes once its rows are durable.
    if isinstance(restriction, WatchRestriction):
      return restriction._replace(draining=True)
    return DrainingRange(restriction.start, restriction.stop)
