"""Stream Load body formats: JSON (object, array, NDJSON) and CSV, into source records.

Follows the format options of
https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual and
https://doris.apache.org/docs/data-operate/import/file-format/json /
https://doris.apache.org/docs/data-operate/import/file-format/csv: ``read_json_by_line``,
``strip_outer_array``, ``jsonpaths``, ``json_root``, ``column_separator`` (with ``\\x01`` hex
notation), ``line_delimiter``, ``enclose``, ``trim_double_quotes``, ``skip_lines`` and the
``csv_with_names`` / ``csv_with_names_and_types`` formats. ``\\N`` in CSV is NULL.

A record is either a dict (JSON) or a list of strings (CSV); a record that cannot be read
is reported with the reason Doris would write in the error log.
"""

import csv
import io
import re
from typing import Any, Iterator, List, NamedTuple, Optional, Union

import orjson

_HEX_RE = re.compile(r'\\x([0-9a-fA-F]{2})')


class Record(NamedTuple):
  """One source row: ``value`` is a dict or list, or None with ``error`` set."""
  value: Optional[Union[dict, List[Any]]]
  error: Optional[str]
  src: str


def decode_separator(text: str, default: str) -> str:
  """``\\x01`` -> chr(1), as Doris accepts hex separators; empty -> default."""
  if not text:
    return default
  return _HEX_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


def _json_error(e: Exception) -> str:
  return 'Parse json data for JsonDoc failed. code: 3, error info: %s' % e


def _src(text: Union[bytes, str], limit: int = 1024) -> str:
  if isinstance(text, bytes):
    text = text[:limit].decode('utf-8', 'replace')
  return text[:limit]


def _parse_jsonpath(path: str) -> List[Union[str, int]]:
  path = path.strip()
  if not path.startswith('$'):
    raise ValueError('Invalid jsonpath: %s' % path)
  steps: List[Union[str, int]] = []
  for m in re.finditer(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]", path[1:]):
    if m.group(1) is not None:
      steps.append(m.group(1))
    elif m.group(2) is not None:
      steps.append(int(m.group(2)))
    else:
      steps.append(m.group(3) if m.group(3) is not None else m.group(4))
  return steps


_MISSING = object()
ALL_NULL = 'All fields is null, this is a invalid row.'


def _extract(doc: Any, steps, missing: Any = None) -> Any:
  for step in steps:
    if isinstance(step, int):
      if not isinstance(doc, list) or step >= len(doc):
        return missing
      doc = doc[step]
    else:
      if not isinstance(doc, dict) or step not in doc:
        return missing
      doc = doc[step]
  return doc


class JsonReader:
  """Reads JSON bodies the way Doris's JSON reader does.

  Args:
    read_json_by_line: one JSON value per line (NDJSON).
    strip_outer_array: the (per-line) value is an array of rows.
    jsonpaths: JSON list of ``$.path`` strings; rows become lists in that order.
    json_root: ``$.path`` of the element holding the rows.
    num_as_string: keep numbers as their text (orjson parses them; we re-serialize).
  """

  def __init__(self, read_json_by_line=False, strip_outer_array=False, jsonpaths=None,
               json_root=None):
    self.read_json_by_line = read_json_by_line
    self.strip_outer_array = strip_outer_array
    self.paths = None
    if jsonpaths:
      try:
        paths = orjson.loads(jsonpaths)
      except orjson.JSONDecodeError as e:
        raise ValueError('Invalid json path: %s' % jsonpaths) from e
      if not isinstance(paths, list):
        raise ValueError('Invalid json path: %s' % jsonpaths)
      self.paths = [_parse_jsonpath(p) for p in paths]
    self.root = _parse_jsonpath(json_root) if json_root else None

  def read(self, body: bytes) -> Iterator[Record]:
    if self.read_json_by_line:
      for line in body.split(b'\n'):
        if not line.strip():
          continue
        yield from self._doc(line)
    else:
      if not body.strip():
        return
      yield from self._doc(body)

  def _doc(self, text: bytes) -> Iterator[Record]:
    try:
      doc = orjson.loads(text)
    except orjson.JSONDecodeError as e:
      yield Record(None, _json_error(e), _src(text))
      return
    if self.root is not None:
      doc = _extract(doc, self.root)
    if isinstance(doc, list):
      if not self.strip_outer_array:
        yield Record(None, 'JSON data is array-object, `strip_outer_array` must be TRUE.',
                     _src(text))
        return
      for item in doc:
        yield self._row(item, text)
    elif self.strip_outer_array:
      yield Record(None, 'JSON data is not an array-object with `strip_outer_array` is true',
                   _src(text))
    else:
      yield self._row(doc, text)

  def _row(self, item: Any, text: bytes) -> Record:
    if not isinstance(item, dict):
      return Record(None, 'Expected value is object, but get other type', _src(text))
    if self.paths is not None:
      values = [_extract(item, p, _MISSING) for p in self.paths]
      if all(v is _MISSING for v in values):
        return Record(None, ALL_NULL, _src(orjson.dumps(item)))
      return Record([None if v is _MISSING else v for v in values], None, '')
    return Record(item, None, '')


class CsvReader:
  """Reads CSV bodies (Doris's plain separator-split CSV, optionally enclosed)."""

  def __init__(self, column_separator='\t', line_delimiter='\n', enclose='', escape='',
               trim_double_quotes=False, skip_lines=0):
    self.sep = column_separator
    self.line_delimiter = line_delimiter
    self.enclose = enclose
    self.escape = escape
    self.trim_double_quotes = trim_double_quotes
    self.skip_lines = skip_lines

  def read(self, body: bytes) -> Iterator[Record]:
    text = body.decode('utf-8', 'replace')
    lines = text.split(self.line_delimiter)
    if lines and lines[-1] == '':
      lines.pop()
    for line in lines[self.skip_lines:]:
      if line == '':
        continue
      if self.enclose and len(self.sep) == 1:
        fields = next(csv.reader(io.StringIO(line), delimiter=self.sep,
                                 quotechar=self.enclose, escapechar=self.escape or None))
      else:
        fields = line.split(self.sep)
      if self.trim_double_quotes:
        fields = [f[1:-1] if len(f) >= 2 and f[0] == f[-1] == '"' else f for f in fields]
      yield Record([None if f == '\\N' else f for f in fields], None, line)


def count_rows(body: bytes, fmt: str, read_json_by_line: bool, line_delimiter: str,
               skip_lines: int) -> int:
  """Count-only mode: rows in ``body`` without parsing them (newline counting)."""
  if fmt == 'json' and not read_json_by_line:
    try:
      doc = orjson.loads(body)
    except orjson.JSONDecodeError:
      return 1
    return len(doc) if isinstance(doc, list) else 1
  delim = line_delimiter.encode() if line_delimiter else b'\n'
  n = body.count(delim)
  if body and not body.endswith(delim):
    n += 1
  return max(n - skip_lines, 0)
