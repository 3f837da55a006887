"""``ParseRecords``: the Beam face of ``RecordParser``.

``KafkaChunk``s in; per-table row lists, dead letters and chunk reads out.
The DoFn only emits the parser's results and updates the metrics.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import metrics
from transforms.records.formats import ValueFormat
from transforms.records.parser import DEFAULT_MAX_RECORD_BYTES, RecordParser
from transforms.records.reasons import REASON_CODES, SKIP_CODES
from transforms.records.routing import Routing
from transforms.types import KafkaChunk, RowBatch, TableHints

__all__ = ['ParseRecords']

_LOGGER = logging.getLogger('transforms.records')


class _ParseRecordsFn(beam.DoFn):
  """Emits ``RecordParser.parse_chunk``'s results and updates the metrics."""

  def __init__(self, parser: RecordParser):
    self._parser = parser
    self._records = Metrics.counter(metrics.NAMESPACE, 'records_parsed')
    self._rows = Metrics.counter(metrics.NAMESPACE, 'rows_parsed')
    self._dead_letters = Metrics.counter(metrics.NAMESPACE, 'dead_letters')
    self._deletes = Metrics.counter(metrics.NAMESPACE, 'cdc_deletes')
    self._skipped = Metrics.counter(metrics.NAMESPACE, 'skipped_records')
    self._by_code = {code: Metrics.counter(metrics.NAMESPACE, f'dead_letters_{code}')
                     for code in REASON_CODES}
    self._by_skip = {code: Metrics.counter(metrics.NAMESPACE, f'skipped_{code}')
                     for code in SKIP_CODES}

  def setup(self):
    self._parser.open()  # registry formats: the worker's schema registry client

  def teardown(self):
    self._parser.close()

  def process(self, chunk: KafkaChunk) -> Iterable[Any]:
    result = self._parser.parse_chunk(chunk)
    rows = 0
    column_types, key_columns = result.column_types, result.key_columns
    for table, table_rows in result.rows_by_table.items():
      if table in column_types or table in key_columns:
        table_rows.hints = TableHints(column_types.get(table), key_columns.get(table))
      rows += len(table_rows)
      yield table, table_rows
    for dead_letter in result.dead_letters:
      yield TaggedOutput(ParseRecords.DEAD_LETTERS, dead_letter)
    yield TaggedOutput(ParseRecords.CHUNK_READS, result.chunk_read)
    if result.records_parsed:
      self._records.inc(result.records_parsed)
    if rows:
      self._rows.inc(rows)
    if result.deletes:
      self._deletes.inc(result.deletes)
    if result.dead_letters:
      self._dead_letters.inc(len(result.dead_letters))
      for code, n in result.dead_letter_codes.items():
        self._by_code[code].inc(n)
      _LOGGER.warning('%d dead letter(s) in %s/%d [%d, %d): first: %s', len(result.dead_letters),
                      chunk.topic, chunk.partition, chunk.first_offset, chunk.next_offset,
                      result.dead_letters[0].reason)
    if result.skipped:
      self._skipped.inc(sum(result.skipped.values()))
      for code, n in result.skipped.items():
        self._by_skip[code].inc(n)


class ParseRecords(beam.PTransform):
  """Parses ``KafkaChunk``s into per-table row lists, dead letters and chunk reads.

  Output (a ``DoOutputsTuple``):

  * ``rows`` (main): ``(table, RowBatch)``, one per table per input chunk,
    rows in Kafka order; where the records' schemas (or CDC record keys) say
    more than the values, the batch carries them as ``hints``
    (``TableHints``: column types, the source's key) for ``EvolveSchema``.
  * ``dead_letters``: ``DeadLetter(stage='parse', reason='<code>: <detail>',
    ...)`` with the record's topic/partition/offset and its raw value
    (truncated to 64 KiB). Codes: ``too_large``, ``empty_value``,
    ``invalid_utf8``, ``invalid_json``, ``not_object``, ``missing_table``,
    ``unmapped_topic``, ``bad_table_name``, ``bad_envelope``, ``unencodable``
    (a row nested deeper than orjson writes, when it must be encoded again);
    registry formats: ``bad_wire_format``, ``unknown_schema``, ``undecodable``.
  * ``chunk_reads``: one ``ChunkRead`` per input chunk; ``count`` = rows +
    dead letters made from it (each acknowledges one unit later).

  Example::

    parsed = chunks | ParseRecords(Routing(table='db.events'))
    parsed.rows | BatchPerTable(...)
    parsed.dead_letters | WriteDeadLetters(...)
    parsed.chunk_reads | CommitOffsets(...)

  Args:
    routing: a ``Routing`` (``--table`` | ``--topic_table_map`` |
      ``--table_field``; none for CDC envelopes naming their table).
    cdc: ``'none'`` | ``'debezium'`` | ``'canal'`` | ``'maxwell'`` | ``'auto'``.
    target: ``'doris'`` | ``'starrocks'``: the delete marker CDC rows carry
      (``__DORIS_DELETE_SIGN__`` or ``__op``, 0 = upsert, 1 = delete).
    sequence_columns: table -> sequence column filled with the Kafka offset
      where a row lacks it (keys must stay in one partition).
    max_record_bytes: larger records are dead-lettered.
    value_format: how values are encoded (``--format``; default JSON); Avro,
      Protobuf and JSON Schema values are decoded with the registry's schemas
      (dead letters ``bad_wire_format``, ``unknown_schema``, ``undecodable``;
      an unavailable registry fails the bundle).
    keep_retrying: a long-running job: wait out an unavailable registry.
    keep_positions: Debezium rows carry their source position (``--ddl_topic``).

  Raises:
    ValueError: on a bad configuration, naming the flag and value.
  """
  ROWS = 'rows'
  DEAD_LETTERS = 'dead_letters'
  CHUNK_READS = 'chunk_reads'

  def __init__(self,
               routing: Routing,
               cdc: str = 'none',
               target: str = 'doris',
               sequence_columns: Optional[Mapping[str, str]] = None,
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               value_format: Optional[ValueFormat] = None,
               keep_retrying: bool = False,
               keep_positions: bool = False):
    super().__init__()
    self._parser = RecordParser(routing, cdc=cdc, target=target,
                                sequence_columns=sequence_columns,
                                max_record_bytes=max_record_bytes, value_format=value_format,
                                keep_retrying=keep_retrying, keep_positions=keep_positions)

  def expand(self, chunks: beam.PCollection[KafkaChunk]):
    return chunks | 'ParseChunks' >> beam.ParDo(
        _ParseRecordsFn(self._parser)).with_output_types(
        beam.typehints.Tuple[str, RowBatch]).with_outputs(
        self.DEAD_LETTERS, self.CHUNK_READS, main=self.ROWS)

  def display_data(self):
    parser = self._parser
    routing = parser.routing
    data = {
        'cdc': parser.cdc,
        'target': parser.target,
        'max_record_bytes': parser.max_record_bytes,
    }
    if parser.value_format.uses_registry:
      data['format'] = parser.value_format.name
      data['schema_registry_url'] = parser.value_format.registry_urls
    if routing.table is not None:
      data['table'] = routing.table
    if routing.topic_table_map is not None:
      data['topic_table_map'] = ','.join(f'{t}={n}' for t, n in routing.topic_table_map.items())
    if routing.table_field is not None:
      data['table_field'] = routing.table_field
    if parser.sequence_columns:
      data['sequence_columns'] = ','.join(f'{t}={c}' for t, c in parser.sequence_columns.items())
    return data

