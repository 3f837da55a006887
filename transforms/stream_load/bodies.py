"""Stream Load request bodies, built in one pass with orjson.

Seed 000's loader spent much of its flush time building JSON through maps; here
each row is encoded once by orjson (or not at all: a Kafka value that already
is a one-line JSON object is reused as is) and joined into one buffer.
Doris reads the body as NDJSON (``format: json`` + ``read_json_by_line:
true``); StarRocks as a JSON array (``strip_outer_array: true``).
"""

from __future__ import annotations

import decimal
import gzip
from typing import Any, Iterable, List, NamedTuple, Sequence, Tuple

import orjson

__all__ = ['EncodedBatch', 'encode_rows', 'encode_dicts', 'gzip_body', 'RowEncodingError']

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


class RowEncodingError(ValueError):
  """A row could not be encoded as JSON."""


def _default(value: Any) -> Any:
  if isinstance(value, decimal.Decimal):
    return str(value)
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value).decode('utf-8')
  if isinstance(value, (set, frozenset, tuple)):
    return list(value)
  raise TypeError(f'type {type(value).__name__} is not JSON serialisable')


class EncodedBatch(NamedTuple):
  """A body ready to send, and the rows that could not be encoded.

  Attributes:
    body: the request body (uncompressed).
    rows: number of rows in ``body``.
    failed: (index in the input, reason) of rows left out.
  """
  body: bytes
  rows: int
  failed: List[Tuple[int, str]]


def encode_dicts(dicts: Iterable[dict], as_array: bool = False) -> EncodedBatch:
  """Encodes plain dicts (one per row) into a Stream Load body.

  Args:
    dicts: the rows.
    as_array: a JSON array (StarRocks) instead of NDJSON (Doris).

  Returns:
    The encoded batch; rows orjson cannot encode are listed in ``failed``.
  """
  return _join(((None, d) for d in dicts), as_array)


def encode_rows(rows: Sequence[Any], as_array: bool = False) -> EncodedBatch:
  """Encodes ``transforms.types.Row``s, reusing ``Row.raw`` where present."""
  return _join(((r.raw, r.fields) for r in rows), as_array)


def _join(pairs, as_array: bool) -> EncodedBatch:
  dumps = orjson.dumps
  parts: List[bytes] = []
  failed: List[Tuple[int, str]] = []
  append = parts.append
  for index, (raw, fields) in enumerate(pairs):
    if raw is not None:
      append(raw)
      continue
    try:
      append(dumps(fields, default=_default, option=_ORJSON_OPTIONS))
    except (TypeError, orjson.JSONEncodeError) as error:
      failed.append((index, f'row is not JSON serialisable: {error}'))
  if as_array:
    body = b'[' + b','.join(parts) + b']'
  else:
    body = b'\n'.join(parts)
  return EncodedBatch(body, len(parts), failed)


def gzip_body(body: bytes, level: int = 1) -> bytes:
  """Gzips a body for ``compress_type: gz`` (level 1: fast, ~4x on JSON)."""
  return gzip.compress(body, compresslevel=level, mtime=0)
