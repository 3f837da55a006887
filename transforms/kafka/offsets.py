"""``OffsetTracker``: which offset of a partition may be committed; pure Python.

Records travel in chunks; each chunk expects one acknowledgement per row or
dead letter made from it.  The tracker keeps, per partition, the chunks not
yet complete and answers the end of the longest prefix of complete chunks:
the offset ``CommitOffsets`` commits.  No Beam, no Kafka: its tests drive it
directly.
"""

from __future__ import annotations

import bisect
from typing import Dict, Iterable, List, Optional

__all__ = ['OffsetTracker']


class OffsetTracker:
  """Per-partition bookkeeping of chunks and acks; no Beam, no Kafka.

  A chunk ``[first_offset, next_offset)`` expects ``count`` ack units; each
  acked offset is one unit for the chunk containing it (an offset may be
  acked several times when one record becomes several rows).  Acks may come
  before their chunk.  The committable offset is ``next_offset`` of the last
  chunk of the longest prefix of complete chunks, where the first chunk seen
  starts the prefix (or ``position``, when set where a read starts) and chunks
  are ordered by offset; it never passes an incomplete chunk, nor a gap
  before a chunk that arrived early.
  """

  def __init__(self):
    self._firsts: List[int] = []   # sorted first offsets of pending chunks
    self._chunks: List[list] = []  # [first, next, remaining], same order
    self._early: Dict[int, int] = {}  # offset -> acks seen before its chunk
    self.position: Optional[int] = None  # end of the complete prefix
    self.committed: Optional[int] = None  # last offset committed to Kafka
    self.stale_acks = 0
    self.stale_chunks = 0

  def __repr__(self):
    return (f'OffsetTracker(position={self.position}, '
            f'committed={self.committed}, pending={self._chunks}, '
            f'early={len(self._early)})')

  @property
  def pending_chunks(self) -> int:
    return len(self._chunks)

  def add_chunk(self, first_offset: int, next_offset: int,
                count: int) -> Optional[int]:
    """Records a chunk; returns the new prefix end if it moved, else None."""
    if next_offset < first_offset or count < 0:
      raise ValueError(
          f'bad chunk [{first_offset}, {next_offset}) count={count}')
    if self.position is not None and first_offset < self.position:
      # Behind the committed prefix: a replay of a chunk already complete.
      self.stale_chunks += 1
      return None
    remaining = count
    if self._early:
      if next_offset - first_offset <= len(self._early):
        offsets = range(first_offset, next_offset)
      else:
        offsets = [o for o in self._early if first_offset <= o < next_offset]
      for offset in offsets:
        remaining -= self._early.pop(offset, 0)
    index = bisect.bisect_left(self._firsts, first_offset)
    self._firsts.insert(index, first_offset)
    self._chunks.insert(index, [first_offset, next_offset, remaining])
    return self._advance()

  def ack(self, offsets: Iterable[int]) -> Optional[int]:
    """Records one ack unit per offset; returns the new prefix end or None."""
    firsts, chunks = self._firsts, self._chunks
    for offset in offsets:
      index = bisect.bisect_right(firsts, offset) - 1
      if index >= 0 and offset < chunks[index][1]:
        chunks[index][2] -= 1
      elif self.position is not None and offset < self.position:
        self.stale_acks += 1
      else:
        self._early[offset] = self._early.get(offset, 0) + 1
    return self._advance()

  def _advance(self) -> Optional[int]:
    chunks = self._chunks
    done = 0
    end = self.position
    # Only complete chunks that follow on from the prefix: a chunk handed on out of order
    # waits for the chunks before it (their offsets are not finished).
    while (done < len(chunks) and chunks[done][2] <= 0
           and (end is None or chunks[done][0] <= end)):
      end = chunks[done][1]
      done += 1
    if not done:
      return None
    new_position = chunks[done - 1][1]
    del chunks[:done]
    del self._firsts[:done]
    if self.position is not None and new_position <= self.position:
      return None
    self.position = new_position
    return new_position

