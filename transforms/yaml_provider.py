"""Beam YAML entry points: ``ReadFromKafkaNative`` and ``WriteToStreamLoad``.

Beam YAML builds a pipeline from transforms named in a provider file
(``templates/yaml/providers.yaml``: ``type: python`` with ``transforms:
{Name: 'transforms.yaml_provider.Callable'}``) and calls each callable with the
step's ``config:`` as keyword arguments, so everything here takes plain
strings, numbers and lists.  Elements between YAML steps must carry a schema,
so the reader emits ``KafkaMessage`` rows (topic, partition, offset, key,
value, timestamp_ms) and the writer emits ``LoadResultRow``,
``DeadLetterRow`` and ``CommitRow`` rows.  The writer composes the pipeline's
own transforms -- ``ParseRecords``, ``KeyByTable``, ``BatchPerTable``,
``WriteToStreamLoad``, ``WriteDeadLetters``, ``CommitOffsets`` -- so a YAML
pipeline has the same labels, batching and offset commits as
``python -m pipelines.kafka_to_doris``.  The difference: the reader hands
records on one by one (YAML steps in between need single rows), so the YAML
route pays Beam's per-element cost that the CLI avoids with chunks.
"""


import logging
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional

import apache_beam as beam
import orjson
from apache_beam.transforms import window
from apache_beam.typehints import schemas

from transforms.batching import BatchLimits, BatchPerTable, KeyByTable
from transforms.dead_letters import WriteDeadLetters
from transforms.labels import sanitize_label_part
from transforms.records import ParseRecords, Routing
from transforms.stream_load import WriteToStreamLoad as _WriteToStreamLoad
from transforms.types import (DeadLetter, KafkaChunk, KafkaRecord, LoadResult, OffsetAck, Row,
                              acks_of_load_result)

__all__ = [
    'CommitRow',
    'DeadLetterRow',
    'KafkaMessage',
    'LoadResultRow',
    'ReadFromKafkaNative',
    'YamlWriteToStreamLoad',
    'INPUT_FORMATS',
    'provider_transforms',
]

_LOGGER = logging.getLogger(__name__)

PASSWORD_ENV_VAR = 'STREAM_LOAD_PASSWORD'
DEFAULT_LABEL_PREFIX = 'beam-yaml'
INPUT_AUTO = 'auto'
INPUT_KAFKA = 'kafka'
INPUT_ROWS = 'rows'
INPUT_FORMATS = (INPUT_AUTO, INPUT_KAFKA, INPUT_ROWS)
_KAFKA_FIELDS = frozenset(['topic', 'partition', 'offset', 'value'])


class KafkaMessage(NamedTuple):
  """One Kafka record as a schema'd row (what ``ReadFromKafkaNative`` emits)."""
  topic: str
  partition: int
  offset: int
  key: Optional[bytes]
  value: Optional[bytes]
  timestamp_ms: int


class LoadResultRow(NamedTuple):
  """One Stream Load of one batch (``WriteToStreamLoad.load_results``)."""
  table: str
  label: str
  status: str
  rows: int
  loaded_rows: int
  filtered_rows: int
  bytes: int
  load_ms: float
  attempts: int


class DeadLetterRow(NamedTuple):
  """A record or row that was not loaded, and why (``WriteToStreamLoad.dead_letters``)."""
  stage: str
  reason: str
  topic: Optional[str]
  partition: Optional[int]
  offset: Optional[int]
  table: Optional[str]
  payload: Optional[bytes]


class CommitRow(NamedTuple):
  """A consumer-group offset commit (``WriteToStreamLoad.commits``)."""
  topic: str
  partition: int
  offset: int


for _row_type in (KafkaMessage, LoadResultRow, DeadLetterRow, CommitRow):
  # Registers a RowCoder, so the rows cross YAML steps (and runners) with a schema.
  beam.coders.registry.register_coder(_row_type, beam.coders.RowCoder)


def _split(value: Any, flag: str) -> List[str]:
  if value is None:
    return []
  if isinstance(value, str):
    items = value.split(',')
  elif isinstance(value, (list, tuple)):
    items = value
  else:
    raise ValueError(f'{flag}: expected a comma-separated string or a list, got {value!r}')
  return [str(item).strip() for item in items if str(item).strip()]


def _consumer_config(bootstrap_servers: str, group_id: str, auto_offset_reset: str,
                     consumer_config: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  if not bootstrap_servers:
    raise ValueError('bootstrap_servers: required')
  if not group_id:
    raise ValueError('group_id: required (offsets are committed to and resumed from this group)')
  config: Dict[str, Any] = {
      'bootstrap.servers': bootstrap_servers,
      'group.id': group_id,
      'auto.offset.reset': auto_offset_reset,
  }
  if consumer_config:
    if not isinstance(consumer_config, Mapping):
      raise ValueError(f'consumer_config: expected a mapping of librdkafka settings, got '
                       f'{consumer_config!r}')
    config.update({str(k): v for k, v in consumer_config.items()})
  config['enable.auto.commit'] = False
  return config


def _message_of(record: KafkaRecord) -> KafkaMessage:
  return KafkaMessage(record.topic, record.partition, record.offset, record.key, record.value,
                      record.timestamp_ms if record.timestamp_ms is not None else -1)


def _messages_of(chunk: KafkaChunk) -> Iterable[Any]:
  for record in chunk.records:
    timestamp_ms = record.timestamp_ms
    message = _message_of(record)
    if timestamp_ms is not None and timestamp_ms >= 0:
      yield window.TimestampedValue(message, timestamp_ms / 1000.0)
    else:
      yield message


class ReadFromKafkaNative(beam.PTransform):
  """Reads Kafka with the project's native Python reader as ``KafkaMessage`` rows.

  YAML::

    - type: ReadFromKafkaNative
      config:
        bootstrap_servers: broker1:9092,broker2:9092
        topics: orders,users
        group_id: orders-to-doris
        stop_at_end: false

  The reader never commits offsets: ``WriteToStreamLoad`` does, after the
  rows are loaded, when given the same ``bootstrap_servers`` and
  ``group_id``.  Runs on every runner that supports splittable DoFns
  (FnApiRunner, Flink, Dataflow); no Java needed.

  Args:
    bootstrap_servers: Kafka brokers, ``host:port[,host:port]``.
    topics: topics to read (a list or a comma-separated string).
    group_id: consumer group whose committed offsets are the start positions.
    stop_at_end: read to the end offsets seen at start, then finish.
    auto_offset_reset: ``earliest`` or ``latest``: where to start without a
      committed offset.
    consumer_config: extra librdkafka settings (e.g. ``security.protocol``).
    max_chunk_records: most records one poll hands on.
    start_timeout_secs: timeout of the metadata and offset requests.
    validate: check brokers and topics while the pipeline is built.
  """

  def __init__(self,
               bootstrap_servers: str,
               topics: Any,
               group_id: str,
               stop_at_end: bool = False,
               auto_offset_reset: str = 'earliest',
               consumer_config: Optional[Mapping[str, Any]] = None,
               max_chunk_records: int = 1000,
               start_timeout_secs: float = 10.0,
               validate: bool = True):
    super().__init__()
    if auto_offset_reset not in ('earliest', 'latest'):
      raise ValueError(f'auto_offset_reset: expected earliest or latest, got {auto_offset_reset!r}')
    self._config = _consumer_config(bootstrap_servers, group_id, auto_offset_reset,
                                    consumer_config)
    self._topics = _split(topics, 'topics')
    if not self._topics:
      raise ValueError(f'topics: at least one topic is required, got {topics!r}')
    from transforms.kafka import ReadKafkaChunks  # pulls in confluent-kafka
    self._read = ReadKafkaChunks(self._config, self._topics, stop_at_end=bool(stop_at_end),
                                 max_chunk_records=int(max_chunk_records),
                                 start_timeout_secs=float(start_timeout_secs),
                                 validate=bool(validate))

  def expand(self, pbegin):
    return (pbegin
            | 'ReadKafkaChunks' >> self._read
            | 'ToKafkaMessages' >> beam.FlatMap(_messages_of).with_output_types(KafkaMessage))


def _field_names(element_type) -> Optional[List[str]]:
  try:
    return [name for name, _ in schemas.named_fields_from_element_type(element_type)]
  except Exception:  # pylint: disable=broad-except
    return None  # no schema: treat the elements as column rows


def _as_bytes(value: Any) -> Optional[bytes]:
  if value is None or isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode('utf-8')
  return bytes(value)


def _chunk_of_message(message: Any) -> KafkaChunk:
  """One record as a one-record chunk: ParseRecords' input and CommitOffsets' unit."""
  offset = int(message.offset)
  timestamp_ms = getattr(message, 'timestamp_ms', None)
  record = KafkaRecord(message.topic, int(message.partition), offset,
                       _as_bytes(getattr(message, 'key', None)), _as_bytes(message.value),
                       int(timestamp_ms) if timestamp_ms is not None else -1)
  return KafkaChunk(record.topic, record.partition, offset, offset + 1, [record])


def _fields_of(element: Any) -> Dict[str, Any]:
  if isinstance(element, dict):
    return dict(element)
  as_dict = getattr(element, '_asdict', None)
  if as_dict is not None:
    return dict(as_dict())
  if hasattr(element, '__dict__'):  # beam.Row
    return dict(vars(element))
  raise TypeError(f'expected a row or a dict, got {type(element).__name__}')


class _RowsToTablesFn(beam.DoFn):
  """Column rows -> ``(table, [Row])``; rows without a table go to dead letters."""

  def __init__(self, routing: Routing):
    self._routing = routing

  def process(self, element):
    try:
      fields = _fields_of(element)
    except TypeError as error:
      yield beam.pvalue.TaggedOutput(ParseRecords.DEAD_LETTERS, DeadLetter(
          'parse', f'not_object: {error}', None, None, None, None, repr(element).encode()[:65536]))
      return
    routing = self._routing
    if routing.table is not None:
      table = routing.table
    else:
      table = routing.qualify(fields.get(routing.table_field))
    payload = orjson.dumps(fields, default=str)
    if table is None:
      yield beam.pvalue.TaggedOutput(ParseRecords.DEAD_LETTERS, DeadLetter(
          'parse', f'missing_table: no valid table in field {routing.table_field!r}', None, None,
          None, None, payload[:65536]))
      return
    yield table, [Row(table, fields, 'upsert', None, None, None, len(payload), None)]


def _load_result_row(result: LoadResult) -> LoadResultRow:
  return LoadResultRow(result.table, result.label, result.status, result.rows, result.loaded_rows,
                       result.filtered_rows, result.bytes, float(result.load_ms), result.attempts)


def _dead_letter_row(letter: DeadLetter) -> DeadLetterRow:
  return DeadLetterRow(letter.stage, letter.reason, letter.topic, letter.partition, letter.offset,
                       letter.table, letter.payload)


def _ack_of_dead_letter(letter: DeadLetter):
  if letter.topic is not None and letter.offset is not None:
    yield OffsetAck(letter.topic, letter.partition, (letter.offset,))


class YamlWriteToStreamLoad(beam.PTransform):
  """Batches rows per table and loads them with Stream Load (YAML ``WriteToStreamLoad``).

  Two kinds of input (``input_format: auto`` picks by the input's schema):

  * ``kafka``: ``KafkaMessage``-like rows (``topic``, ``partition``,
    ``offset``, ``value`` holding JSON) from ``ReadFromKafkaNative``, possibly
    filtered in between.  Values are parsed and routed like the CLI does
    (``table`` | ``topic_table_map`` | ``table_field``, ``cdc_format``);
    labels come from the Kafka offsets, and with ``group_id`` the offsets
    are committed once every row before them is loaded or dead-lettered.
  * ``rows``: any other rows (e.g. after ``MapToFields``): each row's fields
    are the columns; the table is ``table`` or the row's ``table_field``;
    labels come from the batch's content.  Nothing is committed.

  YAML::

    - type: WriteToStreamLoad
      input: ReadFromKafka
      config:
        fe_nodes: http://fe1:8030,http://fe2:8030
        user: loader            # password: the STREAM_LOAD_PASSWORD env var
        table: demo.events
        batch_rows: 10000
        batch_interval_secs: 30
        bootstrap_servers: broker1:9092   # for the offset commits
        group_id: orders-to-doris

  Outputs (``Step.load_results``, ``Step.dead_letters``, ``Step.commits``):
  ``LoadResultRow`` per load, ``DeadLetterRow`` per rejected record/row,
  ``CommitRow`` per offset commit.

  Args:
    fe_nodes: FE URLs (list or comma-separated ``http://host:port``).
    user: Stream Load user.
    password: its password; default: the ``STREAM_LOAD_PASSWORD``
      environment variable, else empty.  Prefer the variable: a password in
      the YAML file ends up in the job's display data.
    target: ``doris`` or ``starrocks``.
    table: ``db.tbl`` for every row.
    topic_table_map: ``topic=db.tbl[,topic2=db.tbl2]`` (kafka input only).
    table_field: field holding ``db.tbl`` (or ``tbl`` with default_database).
    default_database: database for bare table names.
    cdc_format: ``none``, ``debezium``, ``canal``, ``maxwell`` or ``auto``
      (kafka input only).
    input_format: ``auto``, ``kafka`` or ``rows``.
    batch_rows: flush a table's batch at this many rows.
    batch_bytes: ... at this many bytes.
    batch_interval_secs: ... this long after its first row.
    flush_workers: loads in flight per worker.
    label_prefix: first part of every label (default: from group_id).
    compression: ``none`` or ``gzip``.
    max_retries: retries of retryable load failures.
    two_phase_commit: Doris 2PC / StarRocks transaction API.
    load_timeout_secs: timeout of one load.
    connect_timeout_secs: HTTP connect timeout.
    max_record_bytes: larger Kafka values are dead-lettered.
    table_config: YAML file of per-table settings (as ``--table_config``).
    dead_letter_path: write dead letters there (JSON lines) before their
      offsets are committed; without it they are only on ``dead_letters``.
    bootstrap_servers: Kafka brokers, for the offset commits.
    group_id: consumer group to commit to (kafka input only).
    consumer_config: extra librdkafka settings of the committer.

  Raises:
    ValueError: a setting is invalid, naming the setting and the value.
  """

  def __init__(self,
               fe_nodes: Any,
               user: str = 'root',
               password: Optional[str] = None,
               target: str = 'doris',
               table: Optional[str] = None,
               topic_table_map: Optional[str] = None,
               table_field: Optional[str] = None,
               default_database: Optional[str] = None,
               cdc_format: str = 'none',
               input_format: str = INPUT_AUTO,
               batch_rows: int = 10_000,
               batch_bytes: int = 10 * 1024 * 1024,
               batch_interval_secs: float = 30.0,
               flush_workers: int = 4,
               label_prefix: Optional[str] = None,
               compression: str = 'none',
               max_retries: int = 5,
               two_phase_commit: bool = False,
               load_timeout_secs: float = 600.0,
               connect_timeout_secs: float = 10.0,
               max_record_bytes: int = 10 * 1024 * 1024,
               table_config: Optional[str] = None,
               dead_letter_path: Optional[str] = None,
               bootstrap_servers: Optional[str] = None,
               group_id: Optional[str] = None,
               consumer_config: Optional[Mapping[str, Any]] = None):
    super().__init__()
    if input_format not in INPUT_FORMATS:
      raise ValueError(f'input_format: expected one of {"|".join(INPUT_FORMATS)}, '
                       f'got {input_format!r}')
    self._input_format = input_format
    self._routing = Routing(table=table or None, topic_table_map=topic_table_map or None,
                            table_field=table_field or None,
                            default_database=default_database or None)
    self._cdc_format = cdc_format
    self._target = target
    self._max_record_bytes = int(max_record_bytes)
    self._default_limits = BatchLimits(rows=int(batch_rows), bytes=int(batch_bytes),
                                       interval_secs=float(batch_interval_secs))
    from pipelines.table_config import load_table_config
    self._table_config = load_table_config(table_config or '', self._default_limits)
    if password is None:
      password = os.environ.get(PASSWORD_ENV_VAR, '')
    if label_prefix is None:
      label_prefix = (sanitize_label_part(group_id)[:48] if group_id else DEFAULT_LABEL_PREFIX)
    self._write = _WriteToStreamLoad(
        _split(fe_nodes, 'fe_nodes'), user, password, target=target,
        flush_workers=int(flush_workers), label_prefix=label_prefix, compression=compression,
        max_retries=int(max_retries), table_options=self._table_config.load_options(),
        two_phase_commit=bool(two_phase_commit), load_timeout_secs=float(load_timeout_secs),
        connect_timeout_secs=float(connect_timeout_secs))
    self._dead_letter_path = dead_letter_path or None
    self._commit_config = None
    if group_id:
      self._commit_config = _consumer_config(bootstrap_servers, group_id, 'earliest',
                                             consumer_config)
    if self._routing.topic_table_map is not None and input_format == INPUT_ROWS:
      raise ValueError('topic_table_map: needs Kafka input (input_format kafka or auto)')

  def _resolve_input_format(self, pcoll) -> str:
    if self._input_format != INPUT_AUTO:
      return self._input_format
    names = _field_names(pcoll.element_type)
    if names is not None and _KAFKA_FIELDS.issubset(names):
      return INPUT_KAFKA
    return INPUT_ROWS

  def expand(self, pcoll):
    input_format = self._resolve_input_format(pcoll)
    _LOGGER.info('WriteToStreamLoad (YAML): %s input', input_format)
    if input_format == INPUT_KAFKA:
      parsed = (pcoll
                | 'ToKafkaChunks' >> beam.Map(_chunk_of_message).with_output_types(KafkaChunk)
                | 'ParseRecords' >> ParseRecords(
                    self._routing, cdc=self._cdc_format, target=self._target,
                    sequence_columns=self._table_config.sequence_columns(),
                    max_record_bytes=self._max_record_bytes))
      chunk_reads = parsed[ParseRecords.CHUNK_READS]
    else:
      if self._routing.table is None and self._routing.table_field is None:
        raise ValueError('rows input needs table or table_field')
      parsed = pcoll | 'ToTableRows' >> beam.ParDo(_RowsToTablesFn(self._routing)).with_outputs(
          ParseRecords.DEAD_LETTERS, main=ParseRecords.ROWS)
      chunk_reads = None
    table_limits = self._table_config.batch_limits()
    written = (parsed[ParseRecords.ROWS]
               | 'KeyByTable' >> KeyByTable(table_limits)
               | 'BatchPerTable' >> BatchPerTable(self._default_limits, table_limits)
               | 'WriteToStreamLoad' >> self._write)
    dead_letter_sources = (parsed[ParseRecords.DEAD_LETTERS], written.dead_letters)
    outputs = {
        'load_results': written.load_results
                        | 'LoadResultRows' >> beam.Map(_load_result_row).with_output_types(
                            LoadResultRow),
        'dead_letters': dead_letter_sources
                        | 'AllDeadLetters' >> beam.Flatten()
                        | 'DeadLetterRows' >> beam.Map(_dead_letter_row).with_output_types(
                            DeadLetterRow),
    }
    # Acks travel to CommitOffsets without a Flatten, as in the main pipeline: the
    # FnApiRunner would hold a multi-input Flatten's output until the read ends.
    if self._dead_letter_path:
      dead_letter_acks = dead_letter_sources | 'WriteDeadLetters' >> WriteDeadLetters(
          self._dead_letter_path)
    else:
      dead_letter_acks = tuple(
          letters | f'AckDeadLetters{i}' >> beam.FlatMap(_ack_of_dead_letter)
          for i, letters in enumerate(dead_letter_sources))
    if chunk_reads is not None and self._commit_config is not None:
      from transforms.kafka import CommitOffsets
      load_acks = written.load_results | 'AckLoadedRows' >> beam.FlatMap(acks_of_load_result)
      commits = ((chunk_reads, load_acks) + tuple(dead_letter_acks)
                 | 'CommitOffsets' >> CommitOffsets(self._commit_config))
      outputs['commits'] = commits | 'CommitRows' >> beam.Map(
          lambda commit: CommitRow(*commit)).with_output_types(CommitRow)
    elif input_format == INPUT_KAFKA:
      _LOGGER.warning('WriteToStreamLoad (YAML): no group_id: Kafka offsets are not committed; '
                      'a restart re-reads from the last committed offsets')
    return outputs


def provider_transforms() -> Dict[str, str]:
  """The YAML type -> callable map of ``templates/yaml/providers.yaml``."""
  return {
      'ReadFromKafkaNative': f'{__name__}.ReadFromKafkaNative',
      'WriteToStreamLoad': f'{__name__}.YamlWriteToStreamLoad',
  }
