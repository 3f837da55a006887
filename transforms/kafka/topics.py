"""Which topics a read covers: a list of names or a pattern, never an internal topic.

Pure functions (no Kafka client): ``TopicSelector`` decides whether a topic
name is read, ``new_partitions`` diffs the partitions a metadata answer lists
against the ones already read.  ``partitions`` (at start) and ``discovery``
(while a streaming read runs) use them.
"""

from __future__ import annotations

import re
from typing import AbstractSet, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

from transforms.types import DEFAULT_JOURNAL_TOPIC

__all__ = ['TopicSelector', 'is_internal_topic', 'new_partitions', 'DEFAULT_JOURNAL_TOPIC']

# The load journal's default topic (``--journal_topic``): the loader's own bookkeeping.
# Kafka's internal topics (__consumer_offsets, __transaction_state, ...) and the
# convention for other internal ones.
_INTERNAL_PREFIX = '__'
# Schema Registry's storage topic and Confluent Platform's internal topics.
_VENDOR_INTERNAL = frozenset(['_schemas'])
_VENDOR_INTERNAL_PREFIX = '_confluent'


def is_internal_topic(topic: str) -> bool:
  """Whether ``topic`` is a Kafka, Schema Registry or Confluent internal topic."""
  return (topic.startswith(_INTERNAL_PREFIX) or topic in _VENDOR_INTERNAL or
          topic.startswith(_VENDOR_INTERNAL_PREFIX))


class TopicSelector:
  """The topics of a read: exact names (``topics``) or a regular expression (``pattern``).

  A pattern must match the whole topic name (``re.fullmatch``, like Kafka
  Connect's ``topics.regex``).  It never matches an internal topic
  (``is_internal_topic``), one of ``excluded`` (the load journal's topics) nor one
  ``skip`` says yes to (a topic whose name alone shows its rows are not wanted);
  exact names are read as given.

  Args:
    topics: topic names, or None with a pattern.
    pattern: a regular expression (a string), or None with topics.
    excluded: names a pattern never matches.
    skip: a picklable predicate on a topic's name: True, a pattern never matches it.

  Raises:
    ValueError: neither or both of ``topics`` and ``pattern``, or a bad regular
      expression.
  """

  def __init__(self, topics: Optional[Sequence[str]] = None, pattern: Optional[str] = None,
               excluded: Iterable[str] = (DEFAULT_JOURNAL_TOPIC,),
               skip: Optional[Callable[[str], bool]] = None):
    if (topics is None) == (pattern is None):
      raise ValueError('give topics or a topic pattern, not both and not neither')
    self.topics: Optional[Tuple[str, ...]] = tuple(topics) if topics is not None else None
    self.pattern = pattern
    self.excluded = frozenset(excluded)
    self.skip = skip
    try:
      self._regex = re.compile(pattern) if pattern is not None else None
    except re.error as error:
      raise ValueError(f'topic pattern {pattern!r} is not a regular expression: {error}') from None

  @property
  def is_pattern(self) -> bool:
    return self._regex is not None

  def matches(self, topic: str) -> bool:
    """Whether ``topic`` is read."""
    if self._regex is None:
      return topic in self.topics
    return (self._regex.fullmatch(topic) is not None and not is_internal_topic(topic) and
            topic not in self.excluded and not (self.skip is not None and self.skip(topic)))

  def select(self, topics: Iterable[str]) -> List[str]:
    """The read topics among ``topics``, sorted."""
    return sorted(t for t in set(topics) if self.matches(t))

  def describe(self) -> str:
    """For messages: ``topics a,b`` or ``topic pattern 'x.*'``."""
    if self._regex is None:
      return f'topics {",".join(self.topics)}'
    return f'topic pattern {self.pattern!r}'

  def __eq__(self, other):
    return (isinstance(other, TopicSelector) and
            (self.topics, self.pattern, self.excluded, self.skip) ==
            (other.topics, other.pattern, other.excluded, other.skip))

  def __hash__(self):
    return hash((self.topics, self.pattern, self.excluded))

  def __repr__(self):
    return f'TopicSelector(topics={self.topics!r}, pattern={self.pattern!r})'


def new_partitions(current: Mapping[str, Iterable[int]],
                   known: AbstractSet[Tuple[str, int]]) -> List[Tuple[str, int]]:
  """The ``(topic, partition)``s of ``current`` (topic -> partitions) not in ``known``, sorted.

  Partitions that disappeared (a deleted topic) are not reported: Kafka never
  removes partitions from a live topic, and a re-created topic's partitions
  carry the same numbers.
  """
  return sorted((topic, partition) for topic, partitions in current.items()
                for partition in partitions if (topic, partition) not in known)
