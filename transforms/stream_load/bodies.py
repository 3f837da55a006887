"""Stream Load request bodies: JSON lines, CSV or Arrow, each with the headers that describe it.

* ``json`` (the default): each row encoded once by orjson -- or not at all: a
  Kafka value that already is a one-line JSON object is reused as it is -- and
  joined into one buffer.  Doris reads NDJSON (``format: json``,
  ``read_json_by_line: true``); StarRocks a JSON array (``strip_outer_array``).
* ``csv``: flink-doris-connector's usual choice: ``\\x01`` between columns,
  ``\\x02`` between rows, a ``columns`` header naming the batch's columns in
  order, NULL as ``\\N``, JSON values (objects, arrays) as JSON text.  A value
  holding a separator -- or a text that reads ``\\N`` -- turns on Doris's
  ``enclose: "`` / ``escape: \\`` for its batch (every value enclosed, ``"`` and
  ``\\`` escaped inside).
* ``arrow`` (Doris >= 2.1, ``format: arrow``): an Arrow IPC stream built by
  pyarrow from the rows; a batch whose values pyarrow cannot type (a column
  mixing types) falls back to JSON, logged.

Which to use: ``bench/formats_bench.py`` measures the encode cost and the
bytes per row of each on the same rows.
"""

from __future__ import annotations

import decimal
import gzip
import logging
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import orjson

from transforms.types import fields_of

__all__ = ['EncodedBatch', 'encode_rows', 'encode_dicts', 'gzip_body', 'LOAD_FORMATS', 'JSON',
           'CSV', 'ARROW', 'CSV_NULL', 'CSV_COLUMN_SEPARATOR', 'CSV_LINE_DELIMITER']

_LOGGER = logging.getLogger('transforms.stream_load')

JSON = 'json'
CSV = 'csv'
ARROW = 'arrow'
LOAD_FORMATS = (JSON, CSV, ARROW)
CSV_COLUMN_SEPARATOR = b'\x01'
CSV_LINE_DELIMITER = b'\x02'
CSV_NULL = b'\\N'
_CSV_HEADERS = {'column_separator': '\\x01', 'line_delimiter': '\\x02'}
# The same separators, in StarRocks's header names.
_CSV_HEADERS_STARROCKS = {'column_separator': '\\x01', 'row_delimiter': '\\x02'}
_ENCLOSE_HEADERS = {'enclose': '"', 'escape': '\\'}
# A CSV value holding a separator needs enclosing (so does a text value that reads \N).
_CSV_SPECIAL = (b'\x01', b'\x02')
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
  if isinstance(value, decimal.Decimal):
    return str(value)
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value).decode('utf-8')
  if isinstance(value, (set, frozenset, tuple)):
    return list(value)
  raise TypeError(f'type {type(value).__name__} is not JSON serialisable')


class EncodedBatch(NamedTuple):
  """A body ready to send, the headers that describe it, and the rows left out.

  Attributes:
    body: the request body (uncompressed).
    rows: number of rows in ``body``.
    failed: (index in the input, reason) of rows left out.
    headers: the format headers (``format``, separators, ``columns``, ...).
  """
  body: bytes
  rows: int
  failed: List[Tuple[int, str]]
  headers: Dict[str, str] = {}


def _json_headers(as_array: bool) -> Dict[str, str]:
  return ({'format': 'json', 'strip_outer_array': 'true'} if as_array else
          {'format': 'json', 'read_json_by_line': 'true'})


def encode_dicts(dicts: Iterable[dict], as_array: bool = False) -> EncodedBatch:
  """Encodes plain dicts (one per row) as JSON lines (or a JSON array for StarRocks)."""
  return _join_json(((None, d) for d in dicts), as_array)


def encode_rows(rows: Sequence[Any], as_array: bool = False, load_format: str = JSON,
                starrocks: Optional[bool] = None) -> EncodedBatch:
  """Encodes ``transforms.types.Row``s into a body of ``load_format``.

  Args:
    rows: the batch.
    as_array: JSON: a JSON array (StarRocks) instead of JSON lines (Doris).
    load_format: ``json``, ``csv`` or ``arrow``.
    starrocks: CSV header names for StarRocks (default: as ``as_array``).
  """
  if load_format == CSV:
    return _encode_csv(rows, as_array if starrocks is None else starrocks)
  if load_format == ARROW:
    encoded = _encode_arrow(rows)
    if encoded is not None:
      return encoded
  if all(row.raw is not None for row in rows):
    return _join_raw(rows, as_array)
  return _join_json(((r.raw, r.fields) for r in rows), as_array)


def _join_raw(rows: Sequence[Any], as_array: bool) -> EncodedBatch:
  """Rows that all keep their Kafka value as it came: one join."""
  separator = b',' if as_array else b'\n'
  body = separator.join([row.raw for row in rows])
  return EncodedBatch(b'[' + body + b']' if as_array else body, len(rows), [],
                      _json_headers(as_array))


def _join_json(pairs, as_array: bool) -> EncodedBatch:
  """``(raw or None, fields)`` pairs (a generator: no list of pairs lives on) -> the body."""
  separator = b',' if as_array else b'\n'
  # Rows to encode are appended to one buffer as soon as each is encoded:
  # orjson's result is then freed at once, and the next call reuses its
  # memory. Keeping one result per row until a join costs ~8x more (each is a
  # fresh allocation touching new pages) and holds several times the body.
  dumps = orjson.dumps
  body = bytearray(b'[') if as_array else bytearray()
  failed: List[Tuple[int, str]] = []
  count = 0
  for index, (raw, fields) in enumerate(pairs):
    if raw is None:
      try:
        raw = dumps(fields, default=_default, option=_ORJSON_OPTIONS)
      except (TypeError, orjson.JSONEncodeError) as error:
        failed.append((index, f'not_serialisable: the row is not JSON serialisable: {error}'))
        continue
    if count:
      body += separator
    body += raw
    count += 1
  if as_array:
    body += b']'
  return EncodedBatch(bytes(body), count, failed, _json_headers(as_array))


# ---------------------------------------------------------------------------------------- CSV


def _csv_value(value: Any) -> bytes:
  if value is None:
    return CSV_NULL
  kind = type(value)
  if kind is str:
    return value.encode('utf-8')
  if kind is bool:
    return b'true' if value else b'false'
  if kind is int or kind is decimal.Decimal:
    return str(value).encode('ascii')
  if kind is float:
    return repr(value).encode('ascii')
  if kind is bytes:
    return value
  return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)


def _enclosed(value: bytes) -> bytes:
  return b'"' + value.replace(b'\\', b'\\\\').replace(b'"', b'\\"') + b'"'


def _encode_csv(rows: Sequence[Any], starrocks: bool) -> EncodedBatch:
  columns: Dict[str, None] = {}
  records: List[dict] = []
  failed: List[Tuple[int, str]] = []
  kept: List[int] = []
  for index, row in enumerate(rows):
    try:
      fields = fields_of(row)
    except orjson.JSONDecodeError as error:
      failed.append((index, f'row is not valid JSON: {error}'))
      continue
    records.append(fields)
    kept.append(index)
    for name in fields:
      if name not in columns:
        columns[name] = None
  names = list(columns)
  lines: List[List[bytes]] = []
  enclose = False
  for index, fields in zip(kept, records):
    try:
      values = [_csv_value(fields.get(name)) for name in names]
    except (TypeError, orjson.JSONEncodeError) as error:
      failed.append((index, f'row cannot be written as CSV: {error}'))
      continue
    if not enclose and any(value is not CSV_NULL and (value == CSV_NULL or any(
        special in value for special in _CSV_SPECIAL)) for value in values):
      enclose = True
    lines.append(values)
  if enclose:
    # Every text value is enclosed; NULL stays a bare \N.
    lines = [[value if value is CSV_NULL else _enclosed(value) for value in values]
             for values in lines]
  body = CSV_LINE_DELIMITER.join(CSV_COLUMN_SEPARATOR.join(values) for values in lines)
  headers = {'format': 'csv', 'columns': ','.join(f'`{name}`' for name in names)}
  headers.update(_CSV_HEADERS_STARROCKS if starrocks else _CSV_HEADERS)
  if enclose:
    headers.update(_ENCLOSE_HEADERS)
  failed.sort()
  return EncodedBatch(body, len(lines), failed, headers)


# -------------------------------------------------------------------------------------- Arrow


def _encode_arrow(rows: Sequence[Any]) -> Optional[EncodedBatch]:
  """An Arrow IPC stream of ``rows``, or None when pyarrow cannot type them (use JSON)."""
  import pyarrow as pa  # pylint: disable=import-outside-toplevel  (only for format arrow)
  try:
    table = pa.Table.from_pylist([fields_of(row) for row in rows])
  except (pa.ArrowInvalid, pa.ArrowTypeError, orjson.JSONDecodeError) as error:
    _LOGGER.warning('arrow body: %s; this batch of %d rows goes as JSON', error, len(rows))
    return None
  sink = pa.BufferOutputStream()
  with pa.ipc.new_stream(sink, table.schema) as writer:
    writer.write_table(table)
  return EncodedBatch(sink.getvalue().to_pybytes(), table.num_rows, [], {'format': 'arrow'})


def gzip_body(body: bytes, level: int = 1) -> bytes:
  """Gzips a body for ``compress_type: gz`` (level 1: fast, ~4x on JSON)."""
  return gzip.compress(body, compresslevel=level, mtime=0)
