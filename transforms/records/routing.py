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
import string
from typing import Any, Dict, List, Mapping, Optional, Pattern, Tuple

from transforms.errors import ConfigFault

__all__ = ['Routing', 'TopicTableMap', 'parse_topic_table_map', 'check_name', 'NAME_RE',
           'TABLE_RE', 'is_topic_name', 'SourceNaming', 'parse_merge_tables',
           'DEFAULT_TABLE_TEMPLATE', 'SOURCE_COLUMNS', 'TableCollisionError',
           'debezium_topic_source']

DEFAULT_TABLE_TEMPLATE = '{db}.{table}'
# The columns a merged family's rows carry: where each row came from (they join the key).
SOURCE_COLUMNS = ('_source_db', '_source_table')
_PLACEHOLDERS = ('prefix', 'db', 'schema', 'table', 'topic')

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


def parse_merge_tables(value: str) -> Tuple[Tuple[str, str], ...]:
  """``--merge_tables``: ``regex=target;regex=target`` (ordered; the target may hold ``{1}``,
  ``{name}`` groups and the placeholders of ``--table_template``)."""
  rules = []
  for item in (value or '').split(';'):
    item = item.strip()
    if not item:
      continue
    pattern, sep, target = item.rpartition('=')
    if not sep or not pattern.strip() or not target.strip():
      raise ValueError(f'--merge_tables: bad rule {item!r}: expected "regex=db.table" '
                       '(rules separated by ;)')
    rules.append((pattern.strip(), target.strip()))
  return tuple(rules)


class TableCollisionError(ConfigFault):
  """Two source tables reach one target without a ``--merge_tables`` rule."""


def _fields_of(template: str, flag: str) -> List[str]:
  try:
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
  except ValueError as error:
    raise ValueError(f'{flag}: bad template {template!r}: {error}') from None


class _Args(dict):
  """Placeholder values; a missing one renders empty (``{schema}`` of a MySQL source)."""

  def __missing__(self, key):
    return ''


def debezium_topic_source(topic: str) -> Optional[Tuple[str, Optional[str], str]]:
  """``(db, schema, table)`` a Debezium topic's name gives -- ``<prefix>.<db>.<table>`` (MySQL)
  or ``<prefix>.<db>.<schema>.<table>`` (SQL Server) -- or None for another shape."""
  parts = topic.split('.')
  if len(parts) not in (3, 4) or not all(parts):
    return None
  return parts[1], parts[2] if len(parts) == 4 else None, parts[-1]


@dataclasses.dataclass(frozen=True)
class SourceNaming:
  """How a CDC envelope's source table names its target (a whole database's topics).

  Attributes:
    table_template: the target of a source table (``--table_template``); placeholders
      ``{prefix}`` (the topic's first dot-separated part: Debezium's topic prefix), ``{db}``,
      ``{schema}``, ``{table}``, ``{topic}``.
    include_tables: a regex the whole source ``db.table`` must match (``--include_tables``).
    exclude_tables: a regex no source ``db.table`` may match (``--exclude_tables``).
    merge_tables: ordered ``(regex, target)`` rules on the whole source ``db.table``; the first
      match wins; its target may use the regex's groups (``{1}``, ``{name}``) and the template's
      placeholders. Rows of a merged family carry ``SOURCE_COLUMNS``, which join the key, so
      shards never overwrite each other's keys.

  Raises:
    ValueError: a bad regex or template, naming its flag.
  """
  table_template: str = DEFAULT_TABLE_TEMPLATE
  include_tables: Optional[str] = None
  exclude_tables: Optional[str] = None
  merge_tables: Tuple[Tuple[str, str], ...] = ()

  def __post_init__(self):
    for field in _fields_of(self.table_template, '--table_template'):
      if field not in _PLACEHOLDERS:
        known = ', '.join('{%s}' % name for name in _PLACEHOLDERS)
        raise ValueError(f'--table_template: unknown placeholder {{{field}}} in '
                         f'{self.table_template!r}: use {known}')
    compiled = {}
    for flag, name in (('--include_tables', 'include_tables'),
                       ('--exclude_tables', 'exclude_tables')):
      compiled[name] = _compile(flag, getattr(self, name)) if getattr(self, name) else None
    rules = []
    for pattern, target in self.merge_tables:
      regex = _compile('--merge_tables', pattern)
      for field in _fields_of(target, '--merge_tables'):
        if field in _PLACEHOLDERS or field in regex.groupindex:
          continue
        if not field.isdigit() or not 1 <= int(field) <= regex.groups:
          raise ValueError(f'--merge_tables: {{{field}}} in {target!r} is no group of '
                           f'{pattern!r} and no placeholder')
      rules.append((regex, target))
    object.__setattr__(self, '_include', compiled['include_tables'])
    object.__setattr__(self, '_exclude', compiled['exclude_tables'])
    object.__setattr__(self, '_rules', tuple(rules))

  def target(self, db: Optional[str], table: str, topic: str = '',
             schema: Optional[str] = None) -> Optional[Tuple[str, bool]]:
    """``(target name, merged)`` of a source table, or None when it is not selected.

    The name is rendered, not checked (the caller qualifies it).
    """
    source = f'{db}.{table}' if db else table
    if self._include is not None and not self._include.fullmatch(source):
      return None
    if self._exclude is not None and self._exclude.fullmatch(source):
      return None
    values = _Args(prefix=topic.split('.', 1)[0] if topic else '', db=db or '',
                   schema=schema or '', table=table, topic=topic)
    for regex, target in self._rules:
      match = regex.fullmatch(source)
      if match:
        values.update({name: group or '' for name, group in match.groupdict().items()})
        groups = ('',) + tuple(group or '' for group in match.groups())
        return string.Formatter().vformat(target, groups, values), True
    return self.table_template.format_map(values), False

  def excludes_topic(self, topic: str) -> bool:
    """Whether a topic's name alone shows that ``--exclude_tables`` leaves its table out.

    Debezium names a MySQL table's topic ``<prefix>.<db>.<table>`` and a SQL Server one's
    ``<prefix>.<db>.<schema>.<table>``; when that ``db.table`` matches ``--exclude_tables``
    the topic is never read.  A topic named otherwise is read, and its rows are skipped one by
    one as their envelopes say.  ``--include_tables`` is not decided by name: Postgres and
    Oracle topics carry the schema where MySQL's carry the database, so a name that fails the
    include regex may still hold wanted rows (their envelope's ``source.db`` is the database).
    """
    if self._exclude is None:
      return False
    named = debezium_topic_source(topic)
    return named is not None and self._exclude.fullmatch(f'{named[0]}.{named[2]}') is not None

  def __reduce__(self):
    return SourceNaming, (self.table_template, self.include_tables, self.exclude_tables,
                          self.merge_tables)


def _compile(flag: str, pattern: str) -> Pattern:
  try:
    return re.compile(pattern)
  except re.error as error:
    raise ValueError(f'{flag}: {pattern!r} is not a regular expression: {error}') from None


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
    naming: how an envelope's source table names its target (``SourceNaming``); only with
      none of the three flags above (tables from the envelope).
  """
  table: Optional[str] = None
  topic_table_map: Optional[Mapping[str, str]] = None
  table_field: Optional[str] = None
  default_database: Optional[str] = None
  naming: Optional[SourceNaming] = None

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
    if self.naming is not None and not self.from_envelope:
      raise ValueError('--table_template, --include_tables, --exclude_tables and --merge_tables '
                       'name tables from CDC envelopes: give none of --table, --topic_table_map, '
                       '--table_field with them')

  def __hash__(self):
    mapping = tuple(self.topic_table_map.items()) if self.topic_table_map else None
    return hash((self.table, mapping, self.table_field, self.default_database, self.naming))

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

