"""Where records go: ``Routing`` (``--table`` | ``--topic_table_map`` | ``--table_field``).

With none of the flags the table comes from the CDC envelope.  Table names
are ``db.tbl`` of letters, digits and ``_`` (a bare ``tbl`` takes
``--default_database``); every flag value is checked when the pipeline is
built, with the flag's name in the message.

A ``--topic_table_map`` key is an exact topic name when it holds only the
characters of topic names (letters, digits, ``.``, ``_``, ``-``), else a
regular expression the whole topic name must match (``orders_.*=shop.orders``,
for ``--topic_pattern`` reads).  Exact names win; patterns are tried in the
order given; the answer is cached per topic, so routing costs one dict lookup
per chunk either way.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, List, Mapping, Optional, Pattern, Tuple

__all__ = ['Routing', 'TopicTableMap', 'parse_topic_table_map', 'check_name', 'NAME_RE',
           'TABLE_RE', 'is_topic_name']

NAME_RE = re.compile(r'[A-Za-z0-9_]+\Z')
TABLE_RE = re.compile(r'[A-Za-z0-9_]+\.[A-Za-z0-9_]+\Z')
# The characters Kafka allows in a topic name: a key made only of them is an exact name.
_TOPIC_NAME_RE = re.compile(r'[A-Za-z0-9._-]+\Z')


def is_topic_name(key: str) -> bool:
  """Whether a ``--topic_table_map`` key is an exact topic name (else a pattern)."""
  return _TOPIC_NAME_RE.match(key) is not None


class TopicTableMap(dict):
  """topic -> table, where a key is an exact topic name or a pattern (see the module doc).

  A dict of the keys as given (``items()`` shows patterns as written);
  ``get``, ``[]`` and ``in`` also answer for topics a pattern matches
  (``re.fullmatch``): exact names first, then the patterns in order.

  Raises:
    ValueError: a pattern is not a regular expression.
  """

  def __init__(self, mapping: Mapping[str, str] = ()):
    super().__init__(mapping)
    patterns: List[Tuple[Pattern, str]] = []
    for key, table in self.items():
      if isinstance(key, str) and not is_topic_name(key):
        try:
          patterns.append((re.compile(key), table))
        except re.error as error:
          raise ValueError(f'--topic_table_map: {key!r} is neither a topic name nor a regular '
                           f'expression: {error}') from None
    self._patterns = tuple(patterns)
    self._matched: Dict[str, Optional[str]] = {}

  def _match(self, topic: str) -> Optional[str]:
    try:
      return self._matched[topic]
    except KeyError:
      pass
    table = next((t for regex, t in self._patterns if regex.fullmatch(topic)), None)
    self._matched[topic] = table
    return table

  def get(self, topic, default=None):
    table = dict.get(self, topic)
    if table is None and self._patterns and isinstance(topic, str):
      table = self._match(topic)
    return default if table is None else table

  def __missing__(self, topic):
    table = self._match(topic) if self._patterns and isinstance(topic, str) else None
    if table is None:
      raise KeyError(topic)
    return table

  def __contains__(self, topic) -> bool:
    return self.get(topic) is not None

  @property
  def patterns(self) -> Tuple[str, ...]:
    """The keys that are patterns, in order."""
    return tuple(regex.pattern for regex, _ in self._patterns)

  def __reduce__(self):
    return TopicTableMap, (dict(self),)


def check_name(flag: str, name: Any, what: str = 'table name') -> None:
  if not isinstance(name, str) or not (TABLE_RE.match(name) or NAME_RE.match(name)):
    raise ValueError(
        f'{flag}: bad {what} {name!r}: expected "db.tbl" or "tbl" of letters, digits and _')


def parse_topic_table_map(value: str) -> Dict[str, str]:
  """Parses the ``--topic_table_map`` flag.

  Args:
    value: comma-separated ``topic=db.tbl`` pairs, e.g. ``"t1=db.a,t2=db.b"``;
      whitespace around items is ignored; a table may be a bare ``tbl`` when
      ``--default_database`` is set; a topic may be a pattern
      (``"orders_.*=db.orders"``; no ``,`` or ``=`` in it).

  Returns:
    A dict topic -> table, in the order given.

  Raises:
    ValueError: naming ``--topic_table_map`` and the bad value, if an item is
      not ``topic=table``, a topic repeats, a table name is malformed, or the
      map is empty, or a pattern is not a regular expression.
  """
  if not isinstance(value, str):
    raise ValueError(f'--topic_table_map: expected a string like "t1=db.a,t2=db.b", '
                     f'got {value!r}')
  result: Dict[str, str] = {}
  for item in value.split(','):
    item = item.strip()
    if not item:
      continue
    topic, sep, table = item.partition('=')
    topic, table = topic.strip(), table.strip()
    if not sep or not topic or not table:
      raise ValueError(f'--topic_table_map: bad item {item!r} in {value!r}: '
                       f'expected "topic=db.tbl"')
    try:
      check_name('--topic_table_map', table)
    except ValueError as e:
      raise ValueError(f'{e} (item {item!r} in {value!r})') from None
    if topic in result and result[topic] != table:
      raise ValueError(f'--topic_table_map: topic {topic!r} mapped twice '
                       f'({result[topic]!r} and {table!r}) in {value!r}')
    result[topic] = table
  if not result:
    raise ValueError(f'--topic_table_map: no "topic=db.tbl" pairs in {value!r}')
  TopicTableMap(result)  # checks the patterns
  return result


@dataclasses.dataclass(frozen=True)
class Routing:
  """Where records go: at most one of ``table``, ``topic_table_map``, ``table_field``.

  With none of them, the table comes from the CDC envelope (Debezium
  ``source.db`` + ``source.table``; Canal and Maxwell ``database`` +
  ``table``); plain JSON records need one of them (``ParseRecords`` checks).

  Attributes:
    table: ``"db.tbl"`` for every record (``--table``).
    topic_table_map: topic -> ``"db.tbl"`` (``--topic_table_map``), a
      ``TopicTableMap`` (keys may be patterns); records of other topics are
      dead-lettered.
    table_field: name of a top-level field of each row holding ``"db.tbl"`` or
      ``"tbl"`` (``--table_field``); for CDC records it is looked up in the
      row image (after-image, or before-image for deletes). The field stays in
      the row.
    default_database: database for bare ``"tbl"`` names (``--default_database``).
  """
  table: Optional[str] = None
  topic_table_map: Optional[Mapping[str, str]] = None
  table_field: Optional[str] = None
  default_database: Optional[str] = None

  def __post_init__(self):
    given = [flag for flag, v in (('--table', self.table),
                                  ('--topic_table_map', self.topic_table_map),
                                  ('--table_field', self.table_field)) if v is not None]
    if len(given) > 1:
      raise ValueError(f'{" and ".join(given)} are exclusive: give only one of '
                       f'--table, --topic_table_map, --table_field')
    if self.default_database is not None and (
        not isinstance(self.default_database, str) or not NAME_RE.match(self.default_database)):
      raise ValueError(f'--default_database: bad database name {self.default_database!r}: '
                       f'expected letters, digits and _')
    if self.table is not None:
      check_name('--table', self.table)
      object.__setattr__(self, 'table', self._require_qualified('--table', self.table))
    if self.topic_table_map is not None:
      if isinstance(self.topic_table_map, str):
        mapping = parse_topic_table_map(self.topic_table_map)
      elif isinstance(self.topic_table_map, Mapping):
        mapping = dict(self.topic_table_map)
      else:
        raise ValueError(f'--topic_table_map: expected a dict or "t1=db.a,t2=db.b", '
                         f'got {self.topic_table_map!r}')
      if not mapping:
        raise ValueError('--topic_table_map: empty map')
      for topic, table in mapping.items():
        if not isinstance(topic, str) or not topic:
          raise ValueError(f'--topic_table_map: bad topic {topic!r}')
        check_name('--topic_table_map', table)
        mapping[topic] = self._require_qualified('--topic_table_map', table)
      object.__setattr__(self, 'topic_table_map', TopicTableMap(mapping))
    if self.table_field is not None and (
        not isinstance(self.table_field, str) or not self.table_field):
      raise ValueError(f'--table_field: expected a field name, got {self.table_field!r}')

  def __hash__(self):
    mapping = tuple(self.topic_table_map.items()) if self.topic_table_map else None
    return hash((self.table, mapping, self.table_field, self.default_database))

  def _require_qualified(self, flag: str, table: str) -> str:
    if '.' in table:
      return table
    if self.default_database is None:
      raise ValueError(f'{flag}: table {table!r} has no database: write "db.{table}" '
                       f'or set --default_database')
    return f'{self.default_database}.{table}'

  @property
  def from_envelope(self) -> bool:
    """True when no flag is set and tables come from CDC envelopes."""
    return self.table is None and self.topic_table_map is None and self.table_field is None

  def qualify(self, name: Any, database: Any = None) -> Optional[str]:
    """Returns ``"db.tbl"`` for ``name`` (``"db.tbl"`` or ``"tbl"``), or None if invalid.

    Args:
      name: a table name, qualified or not.
      database: the database for a bare name; ``default_database`` if None.
    """
    if not isinstance(name, str):
      return None
    if database is not None and '.' not in name:
      if not isinstance(database, str):
        return None
      name = f'{database}.{name}'
    elif '.' not in name and self.default_database is not None:
      name = f'{self.default_database}.{name}'
    return name if TABLE_RE.match(name) else None

