"""Beam YAML front end: ``ReadFromKafkaNative`` and ``WriteToStreamLoad`` (YAML names).

Beam YAML builds a pipeline from transforms named in a provider file
(``templates/yaml/providers.yaml``) and calls each with the step's ``config:``
as keyword arguments.  The keywords are the command line's flags, from the
one list ``pipelines.options.FLAG_SPECS`` (names, defaults, help), and they
go through the same ``PipelineConfig`` checks and the same assembly
(``pipelines.assembly.load_chunks``) as the command line, so a YAML pipeline
has the same labels, batching, journal and offset commits.

Elements between YAML steps carry a schema, so the reader emits
``KafkaMessage`` rows one by one (YAML steps in between need single rows, so
this route pays Beam's per-element cost that the command line avoids with
chunks), and the writer turns them back into one-record chunks.  The writer
also takes any other rows (``input_format: rows``): each row's fields are the
columns, its table is ``table`` or its ``table_field``; nothing is committed
and labels come from the batch's content.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

import apache_beam as beam
import orjson
from apache_beam.transforms import window
from apache_beam.typehints import schemas

from pipelines.assembly import kafka_reader, load_chunks, load_rows, run_context
from pipelines.config import ConfigurationError, KafkaSettings, PipelineConfig, options_of
from pipelines.options import AT_LEAST_ONCE, FLAG_SPECS
from transforms.types import (MAX_DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, KafkaChunk, KafkaRecord,
                              LoadResult, Row)

__all__ = ['CommitRow', 'DeadLetterRow', 'KafkaMessage', 'LoadResultRow', 'ReadFromKafkaNative',
           'YamlWriteToStreamLoad', 'INPUT_FORMATS', 'provider_transforms']

_LOGGER = logging.getLogger(__name__)

INPUT_AUTO = 'auto'
INPUT_KAFKA = 'kafka'
INPUT_ROWS = 'rows'
INPUT_FORMATS = (INPUT_AUTO, INPUT_KAFKA, INPUT_ROWS)
_KAFKA_FIELDS = frozenset(['topic', 'partition', 'offset', 'value'])
_READ_FLAGS = ('bootstrap_servers', 'topics', 'group_id', 'stop_at_end', 'auto_offset_reset',
               'consumer_config', 'max_chunk_records', 'topic_pattern',
               'topic_discovery_interval_secs', 'journal_topic')
# The writer takes every flag but those only the read uses.
_WRITE_FLAGS = tuple(spec.name for spec in FLAG_SPECS
                     if spec.name not in ('topics', 'stop_at_end', 'auto_offset_reset',
                                          'max_chunk_records', 'topic_pattern',
                                          'topic_discovery_interval_secs'))
# Placeholders for rows that do not come from Kafka: nothing is read or committed.
_ROWS_ONLY_FLAGS = {'group_id': 'beam-yaml-rows', 'delivery_guarantee': AT_LEAST_ONCE}


class KafkaMessage(NamedTuple):
  """One Kafka record as a schema'd row (what ``ReadFromKafkaNative`` emits)."""
  topic: str
  partition: int
  offset: int
  key: Optional[bytes]
  value: Optional[bytes]
  timestamp_ms: int


class LoadResultRow(NamedTuple):
  """One load, as a schema'd row (``WriteToStreamLoad.load_results``)."""
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
  """One dead letter, as a schema'd row (``WriteToStreamLoad.dead_letters``)."""
  stage: str
  reason: str
  topic: Optional[str]
  partition: Optional[int]
  offset: Optional[int]
  table: Optional[str]
  payload: Optional[bytes]


class CommitRow(NamedTuple):
  """One offset commit, as a schema'd row (``WriteToStreamLoad.commits``)."""
  topic: str
  partition: int
  offset: int


for _row_type in (KafkaMessage, LoadResultRow, DeadLetterRow, CommitRow):
  # Registers a RowCoder, so the rows cross YAML steps (and runners) with a schema.
  beam.coders.registry.register_coder(_row_type, beam.coders.RowCoder)


def _flags_signature(transform_class, flag_names, extra: Iterable[inspect.Parameter] = ()):
  """Gives ``transform_class`` the flags as keyword parameters and documents each.

  Beam YAML reads the ``__init__`` signature and the class docstring's
  ``Args:`` to check and document a step's config.
  """
  specs = {spec.name: spec for spec in FLAG_SPECS}
  params = [inspect.Parameter('self', inspect.Parameter.POSITIONAL_OR_KEYWORD)]
  params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                               default=specs[name].default,
                               annotation=bool if specs[name].is_bool else specs[name].type)
             for name in flag_names]
  params += list(extra)
  transform_class.__init__.__signature__ = inspect.Signature(params)
  args = '\n'.join(f'    {name}: {specs[name].help}' for name in flag_names)
  args += ''.join(f'\n    {p.name}: {_EXTRA_DOCS[p.name]}' for p in extra)
  transform_class.__doc__ = transform_class.__doc__.rstrip() + '\n\n  Args:\n' + args + '\n'
  return transform_class


_EXTRA_DOCS = {
    'input_format': 'auto (by the input\'s schema), kafka (KafkaMessage rows: parsed, routed and '
                    'committed like the command line) or rows (each row\'s fields are the '
                    'columns; nothing is committed).',
}


def _message_of(record: KafkaRecord) -> KafkaMessage:
  return KafkaMessage(record.topic, record.partition, record.offset, record.key, record.value,
                      record.timestamp_ms if record.timestamp_ms is not None else -1)


def _messages_of(chunk: KafkaChunk) -> Iterable[Any]:
  for record in chunk.records:
    message = _message_of(record)
    if record.timestamp_ms is not None and record.timestamp_ms >= 0:
      yield window.TimestampedValue(message, record.timestamp_ms / 1000.0)
    else:
      yield message


class ReadFromKafkaNative(beam.PTransform):
  """Reads Kafka with the project's native Python reader as ``KafkaMessage`` rows.

  The reader never commits offsets: ``WriteToStreamLoad`` does, after the
  rows are loaded, given the same ``bootstrap_servers`` and ``group_id``.
  Runs on every runner that supports splittable DoFns; no Java needed.
  """

  def __init__(self, **flags):
    super().__init__()
    try:
      settings = KafkaSettings.from_options(options_of(flags))
    except ConfigurationError as error:
      raise ValueError(str(error)) from None
    self._read = kafka_reader(settings)

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

  def __init__(self, config: PipelineConfig):
    self._routing = config.routing

  def process(self, element):
    try:
      fields = _fields_of(element)
    except TypeError as error:
      yield beam.pvalue.TaggedOutput('dead_letters', DeadLetter(
          'parse', f'not_object: {error}', None, None, None, None,
          repr(element).encode()[:MAX_DEAD_LETTER_PAYLOAD_BYTES]))
      return
    routing = self._routing
    table = routing.table if routing.table is not None else routing.qualify(
        fields.get(routing.table_field))
    payload = orjson.dumps(fields, default=str)
    if table is None:
      yield beam.pvalue.TaggedOutput('dead_letters', DeadLetter(
          'parse', f'missing_table: no valid table in field {routing.table_field!r}', None, None,
          None, None, payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]))
      return
    yield table, [Row(table, fields, 'upsert', None, None, None, len(payload), None)]


def _load_result_row(result: LoadResult) -> LoadResultRow:
  return LoadResultRow(result.table, result.label, result.status, result.rows, result.loaded_rows,
                       result.filtered_rows, result.bytes, float(result.load_ms), result.attempts)


def _dead_letter_row(letter: DeadLetter) -> DeadLetterRow:
  return DeadLetterRow(letter.stage, letter.reason, letter.topic, letter.partition, letter.offset,
                       letter.table, letter.payload)


class YamlWriteToStreamLoad(beam.PTransform):
  """Batches rows per table and loads them with Stream Load (YAML ``WriteToStreamLoad``).

  Takes ``KafkaMessage``-like rows (``topic``, ``partition``, ``offset``,
  ``value`` holding JSON) from ``ReadFromKafkaNative``, possibly filtered in
  between, or any other rows (see ``input_format``).  The password comes best
  from the ``STREAM_LOAD_PASSWORD`` environment variable or ``password_file``:
  a value in the YAML file ends up in the job's display data.

  Outputs: ``load_results`` (``LoadResultRow`` per load), ``dead_letters``
  (``DeadLetterRow`` per rejected record or row), ``commits`` (``CommitRow``
  per offset commit, Kafka input).
  """

  def __init__(self, input_format: str = INPUT_AUTO, **flags):
    super().__init__()
    if input_format not in INPUT_FORMATS:
      raise ValueError(f'input_format: expected one of {"|".join(INPUT_FORMATS)}, '
                       f'got {input_format!r}')
    self._input_format = input_format
    self._flags = flags
    self._kafka_config = self._config(require_kafka=True) if input_format == INPUT_KAFKA else None
    self._rows_config = self._config(require_kafka=False) if input_format == INPUT_ROWS else None
    if input_format == INPUT_AUTO:  # check now what can be checked either way
      self._config(require_kafka=False)

  def _config(self, require_kafka: bool) -> PipelineConfig:
    flags = dict(self._flags)
    if not require_kafka:
      flags.update(_ROWS_ONLY_FLAGS)
    try:
      return PipelineConfig.from_options(options_of(flags), require_topics=False)
    except ConfigurationError as error:
      raise ValueError(str(error)) from None

  def _resolve_input_format(self, pcoll) -> str:
    if self._input_format != INPUT_AUTO:
      return self._input_format
    names = _field_names(pcoll.element_type)
    return INPUT_KAFKA if names is not None and _KAFKA_FIELDS.issubset(names) else INPUT_ROWS

  def expand(self, pcoll):
    input_format = self._resolve_input_format(pcoll)
    _LOGGER.info('WriteToStreamLoad (YAML): %s input', input_format)
    if input_format == INPUT_KAFKA:
      config = self._kafka_config or self._config(require_kafka=True)
      chunks = pcoll | 'ToKafkaChunks' >> beam.Map(_chunk_of_message).with_output_types(KafkaChunk)
      outputs = load_chunks(chunks, config, context=run_context(config))
      result = {'commits': outputs.commits | 'AllCommits' >> beam.Flatten() | 'CommitRows' >> beam.Map(
          lambda commit: CommitRow(*commit)).with_output_types(CommitRow)}
      load_results, dead_letters = outputs.load_results, outputs.dead_letters
    else:
      config = self._rows_config or self._config(require_kafka=False)
      if config.routing.table is None and config.routing.table_field is None:
        raise ValueError('rows input needs table or table_field')
      routed = pcoll | 'ToTableRows' >> beam.ParDo(_RowsToTablesFn(config)).with_outputs(
          'dead_letters', main='rows')
      tables = load_rows(routed.rows, config, context=run_context(config),
                         parse_dead_letters=routed.dead_letters)
      load_results, dead_letters = tables.load_results, tables.dead_letters
      result = {}
    result['load_results'] = load_results | 'LoadResultRows' >> beam.Map(
        _load_result_row).with_output_types(LoadResultRow)
    result['dead_letters'] = (dead_letters | 'AllDeadLetters' >> beam.Flatten()
                              | 'DeadLetterRows' >> beam.Map(_dead_letter_row).with_output_types(
                                  DeadLetterRow))
    return result


_flags_signature(ReadFromKafkaNative, _READ_FLAGS)
_flags_signature(YamlWriteToStreamLoad, _WRITE_FLAGS, [
    inspect.Parameter('input_format', inspect.Parameter.KEYWORD_ONLY, default=INPUT_AUTO,
                      annotation=str)])


def provider_transforms() -> Dict[str, str]:
  """The YAML type -> callable map of ``templates/yaml/providers.yaml``."""
  return {
      'ReadFromKafkaNative': f'{__name__}.ReadFromKafkaNative',
      'WriteToStreamLoad': f'{__name__}.YamlWriteToStreamLoad',
  }
