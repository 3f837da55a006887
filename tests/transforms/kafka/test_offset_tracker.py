"""Unit tests of the prefix logic behind CommitOffsets (no Beam, no Kafka)."""

import pytest

from transforms.kafka import OffsetTracker

pytestmark = pytest.mark.unit


def test_complete_chunks_advance_the_prefix():
  t = OffsetTracker()
  assert t.add_chunk(0, 3, 3) is None
  assert t.ack([0, 1]) is None
  assert t.ack([2]) == 3
  assert t.position == 3


def test_never_moves_past_an_incomplete_chunk():
  t = OffsetTracker()
  t.add_chunk(0, 2, 2)
  t.add_chunk(2, 4, 2)
  t.add_chunk(4, 6, 2)
  assert t.ack([2, 3, 4, 5]) is None  # later chunks done, first is not
  assert t.position is None
  assert t.ack([0]) is None
  assert t.ack([1]) == 6  # all three complete at once
  assert t.pending_chunks == 0


def test_acks_before_their_chunk_are_kept():
  t = OffsetTracker()
  assert t.ack([10, 11]) is None
  assert t.add_chunk(10, 12, 2) == 12


def test_zero_count_chunk_is_complete_at_once():
  t = OffsetTracker()
  assert t.add_chunk(0, 5, 0) == 5
  t.add_chunk(5, 7, 1)
  assert t.add_chunk(7, 9, 0) is None  # behind an incomplete chunk
  assert t.ack([6]) == 9


def test_one_offset_can_carry_several_units():
  t = OffsetTracker()
  t.add_chunk(0, 2, 4)  # record 0 -> 3 rows, record 1 -> 1 row
  assert t.ack([0, 0]) is None
  assert t.ack([1]) is None
  assert t.ack([0]) == 2


def test_a_chunk_after_a_gap_waits_for_the_chunk_that_fills_it():
  # Chunks of a partition are contiguous (markers lie inside them): a gap is a chunk that has
  # not arrived yet, and the prefix must not pass its offsets.
  t = OffsetTracker()
  t.add_chunk(0, 2, 1)
  t.add_chunk(5, 7, 1)
  assert t.ack([6]) is None
  assert t.ack([1]) == 2
  assert t.add_chunk(2, 5, 0) == 7


def test_a_start_position_makes_an_early_chunk_wait():
  t = OffsetTracker()
  t.position = 100  # where the read starts
  t.add_chunk(110, 120, 1)  # handed on before [100, 110)
  assert t.ack([115]) is None
  t.add_chunk(100, 110, 1)
  assert t.ack([101]) == 120


def test_first_chunk_seen_starts_the_prefix():
  t = OffsetTracker()
  assert t.add_chunk(100, 110, 1) is None
  assert t.ack([105]) == 110


def test_chunk_arriving_late_but_before_commit_joins_in_order():
  t = OffsetTracker()
  t.add_chunk(10, 20, 1)
  t.add_chunk(0, 10, 1)
  assert t.ack([15]) is None  # chunk [0,10) is first and incomplete
  assert t.ack([3]) == 20


def test_acks_behind_the_prefix_are_counted_stale():
  t = OffsetTracker()
  t.add_chunk(0, 2, 1)
  t.ack([0])
  assert t.ack([1]) is None
  assert t.stale_acks == 1
  assert t.add_chunk(0, 2, 1) is None
  assert t.stale_chunks == 1


def test_bad_chunk_is_rejected():
  with pytest.raises(ValueError):
    OffsetTracker().add_chunk(5, 4, 1)


def test_tracker_pickles():
  import pickle
  t = OffsetTracker()
  t.add_chunk(0, 4, 4)
  t.ack([0, 1, 9])
  t2 = pickle.loads(pickle.dumps(t))
  assert t2.ack([2, 3]) == 4
