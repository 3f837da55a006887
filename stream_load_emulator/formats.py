"""Stream Load body formats: JSON (object, array, NDJSON), CSV and Arrow, into source records.

Follows the format options of
https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual and
https://doris.apache.org/docs/data-operate/import/file-format/json /
https://doris.apache.org/docs/data-operate/import/file-format/csv: ``read_json_by_line``,
``strip_outer_array``, ``jsonpaths``, ``json_root``, ``column_separator`` / ``line_delimiter``
(``\\x01`` / ``\\x0D0A`` hex notation, as ``fe/.../analysis/Separator.java`` converts it),
``enclose``, ``escape``, ``trim_double_quotes``, ``skip_lines`` and the ``csv_with_names`` /
``csv_with_names_and_types`` formats; ``\\N`` in CSV is NULL. CSV splitting follows
``be/src/vec/exec/format/csv/csv_reader.cpp`` and the enclose state machine of
``be/src/vec/exec/format/file_reader/new_plain_text_line_reader.cpp``. StarRocks flavour:
``row_delimiter``, ``skip_header``, ``trim_space``, ``enclose``, ``escape``
(https://docs.starrocks.io/docs/sql-reference/sql-statements/loading_unloading/STREAM_LOAD/).
Arrow: ``format: arrow`` (Doris >= 2.1, apache/doris#26709) is an Arrow IPC *stream*, read
like ``be/src/vec/exec/format/arrow/arrow_stream_reader.cpp`` (columns matched by name).

A record is either a dict (JSON, Arrow) or a list of strings (CSV); a record that cannot be
read is reported with the reason Doris would write in the error log.
"""

import datetime
import decimal
import re
from typing import Any, Iterator, List, NamedTuple, Optional, Sequence, Union

import orjson

_HEX_DIGITS = '0123456789ABCDEF'
_HEX_PREFIX_RE = re.compile(r'\\x', re.I)
_UNESCAPES = {'\\': '\\', "'": "'", '"': '"', 'r': '\r', 't': '\t', 'n': '\n'}


class Record(NamedTuple):
  """One source row: ``value`` is a dict or list, or None with ``error`` set.

  ``raw`` (CSV) holds the split fields (bytes or text) before NULL / quote / escape
  handling, for the wrong-column-count message.
  """
  value: Optional[Union[dict, List[Any]]]
  error: Optional[str]
  src: str
  raw: Optional[List[str]] = None


class SeparatorError(ValueError):
  """A ``column_separator`` / ``line_delimiter`` the FE's ``Separator`` rejects."""


def convert_separator(text: str) -> bytes:
  """Doris ``Separator.convertSeparator``: the separator's bytes.

  A value starting with ``\\x`` (any case) is hex: every ``\\x`` is dropped and the rest
  must be an even number of hex digits (``\\x01`` -> 0x01, ``\\x0D0A`` and ``\\x0d\\x0a`` ->
  CR LF). Anything else is unescaped (``\\t``, ``\\n``, ``\\r``, ``\\\\``, ``\\'``, ``\\"``).

  Raises:
    SeparatorError: with the FE's message (``Hex str is empty`` / ``Hex str format error`` /
      ``Hex str length error``).
  """
  if text.upper().startswith('\\X'):
    hex_str = _HEX_PREFIX_RE.sub('', text)
    if not hex_str:
      raise SeparatorError('Hex str is empty')
    if any(c not in _HEX_DIGITS for c in hex_str.upper()):
      raise SeparatorError('Hex str format error')
    if len(hex_str) % 2:
      raise SeparatorError('Hex str length error')
    return bytes.fromhex(hex_str)
  out, slash = [], False
  for i, ch in enumerate(text):
    if slash:
      slash = False
      out.append(_UNESCAPES.get(ch, '\\' + ch))
    elif ch == '\\' and i < len(text) - 1:
      slash = True
    else:
      out.append(ch)
  return ''.join(out).encode('utf-8')


def separator_bytes(text: str, default: bytes) -> bytes:
  """``convert_separator`` for counting: empty or invalid -> ``default``. Never raises."""
  if not text:
    return default
  try:
    return convert_separator(text)
  except SeparatorError:
    return default


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


NULL_FORMAT = b'\\N'
_DORIS_BAD_UTF8 = ('Unable to display, only support csv data in utf8 codec, please check the '
                   'data encoding')


def _strip_pair(value: bytes, quote: int) -> bytes:
  if len(value) >= 2 and value[0] == quote and value[-1] == quote:
    return value[1:-1]
  return value


def _unescape_for_csv(value: bytes, escape: int, quote: Optional[int]) -> bytes:
  """Doris ``escape_string_for_csv``: drops an escape char (``\\,`` -> ``,``, ``\\\\`` -> ``\\``)
  and the first of two enclose chars (``""`` -> ``"``)."""
  if escape not in value and (quote is None or bytes((quote, quote)) not in value):
    return value
  out = bytearray()
  skip_next = False
  n = len(value)
  for i, c in enumerate(value):
    if (quote is not None and i < n - 1 and c == quote and value[i + 1] == quote) or (
        c == escape):
      skip_next = not skip_next
    else:
      skip_next = False
    if not skip_next:
      out.append(c)
  return bytes(out)


class CsvReader:
  """Doris's CSV reader: plain separator split, or the enclose/escape state machine.

  Args:
    column_separator / line_delimiter: bytes, already converted (``convert_separator``).
    enclose / escape: one byte each, or None.
    trim_double_quotes: strip one pair of ``"`` around each field (a quoted ``"\\N"`` is then
      the text ``\\N``, not NULL, as ``CsvReader::_deserialize_nullable_string`` does).
    skip_lines: lines (records) dropped before the data.
  """

  def __init__(self, column_separator: bytes = b'\t', line_delimiter: bytes = b'\n',
               enclose: Optional[int] = None, escape: Optional[int] = None,
               trim_double_quotes: bool = False, skip_lines: int = 0):
    self.sep = column_separator
    self.delim = line_delimiter
    self.enclose = enclose
    self.escape = escape
    self.trim_double_quotes = trim_double_quotes
    self.skip_lines = skip_lines

  def column_count_error(self, raw: Sequence[str], expected: int) -> str:
    """``CsvReader::_line_split_to_values``'s wrong-column-count text."""
    more = len(raw) > expected
    msg = ('actual column number in csv file is  %s  schema column number.actual number: %d, '
           'schema column number: %d; line delimiter: [%s], column separator: [%s], ' % (
               'more than' if more else 'less than', len(raw), expected,
               self.delim.decode('utf-8', 'replace'), self.sep.decode('utf-8', 'replace')))
    if self.enclose is not None:
      msg += 'enclose:[%s] ' % chr(self.enclose)
    if self.escape is not None:
      msg += 'escape:[%s] ' % chr(self.escape)
    return msg + 'result values:[%s]' % ''.join(
        '%s, ' % (v.decode('utf-8', 'replace') if isinstance(v, bytes) else v) for v in raw)

  # --- records -------------------------------------------------------------------------------

  def _plain_records(self, body: bytes):
    pos, n, dl, sep = 0, len(body), len(self.delim), self.sep
    while pos < n:
      end = body.find(self.delim, pos)
      if end < 0:
        end = n
      line = body[pos:end]
      pos = end + dl
      yield line, None if not line else line.split(sep)

  def _enclosed_records(self, body: bytes):
    """``EncloseCsvLineReaderCtx``: separators and line delimiters inside an enclosed field
    are data; ``""`` inside it is a literal quote; the escape char protects the next byte."""
    enc, esc, sep, delim = self.enclose, self.escape, self.sep, self.delim
    n, dl, sl = len(body), len(self.delim), len(self.sep)
    pos = 0
    while pos < n:
      line_end = body.find(delim, pos)
      if line_end < 0:
        line_end = n
      i, starts, ends = pos, [pos], []
      state = 'start'
      while True:
        if state == 'start':
          if i < line_end and body[i] == enc:
            state, i = 'enclosed', i + 1
          else:
            state = 'normal'
        elif state == 'normal':
          j = body.find(sep, i, line_end)
          if j < 0:
            break
          ends.append(j)
          i = j + sl
          starts.append(i)
          state = 'start'
        else:  # 'enclosed': look for the closing enclose, possibly past line delimiters
          should_escape = quote_escape = closed = False
          while True:
            bound = min(line_end + dl, n)
            while i < bound:
              c = body[i]
              if c == esc:
                should_escape = not should_escape
              elif should_escape:
                should_escape = False
              elif quote_escape:
                quote_escape = False
                if c != enc:
                  closed = True
                  break
              elif c == enc:
                quote_escape = True
              i += 1
            if closed or line_end >= n:
              break
            nxt = body.find(delim, line_end + dl)
            line_end = n if nxt < 0 else nxt
          if not closed:
            break  # unterminated enclose: the rest of the body is this record
          state = 'normal'  # MATCH_ENCLOSE: the next separator ends the field
      ends.append(line_end)
      line = body[pos:line_end]
      pos = line_end + dl
      yield line, None if not line else [body[a:b] for a, b in zip(starts, ends)]

  def read(self, body: bytes) -> Iterator[Record]:
    records = self._plain_records(body) if self.enclose is None else (
        self._enclosed_records(body))
    skip = self.skip_lines
    strip_cr = self.delim == b'\n'
    bom_checked = False
    enc, esc, tdq = self.enclose, self.escape, self.trim_double_quotes
    for line, fields in records:
      if skip > 0:
        skip -= 1
        continue
      if not bom_checked:
        bom_checked = True
        if line.startswith(b'\xef\xbb\xbf'):
          line = line[3:]
          if fields:
            fields[0] = fields[0][3:]
      if strip_cr and line.endswith(b'\r'):
        # keep_carriage_return=false: a CR before the LF is not data.
        line = line[:-1]
        if fields:
          fields[-1] = fields[-1][:-1]
      if not line:
        continue  # Doris skips empty lines
      try:
        src = line.decode('utf-8')
      except UnicodeDecodeError:
        yield Record(None, _DORIS_BAD_UTF8, line.decode('utf-8', 'replace'))
        continue
      if enc is not None:
        fields = [_strip_pair(f, enc) for f in fields]
      values: List[Optional[str]] = []
      for f in fields:
        if tdq and len(f) >= 2 and f[0] == 0x22 and f[-1] == 0x22:
          f = f[1:-1]  # trimmed: never NULL
        elif f == NULL_FORMAT:
          values.append(None)
          continue
        if esc is not None:
          f = _unescape_for_csv(f, esc, enc)
        values.append(f.decode('utf-8'))
      yield Record(values, None, src, fields)


class StarRocksCsvReader(CsvReader):
  """StarRocks's CSV reader: ``row_delimiter``, ``skip_header``, ``trim_space``, and
  ``enclose`` / ``escape`` where the escape char works inside and outside enclosed fields
  (https://docs.starrocks.io/docs/sql-reference/sql-statements/loading_unloading/STREAM_LOAD/
  ``escape``: ``a, b\\, c`` is the two fields ``a`` and ``b, c``)."""

  def __init__(self, column_separator=b'\t', row_delimiter=b'\n', enclose=None, escape=None,
               skip_header=0, trim_space=False):
    super().__init__(column_separator, row_delimiter, enclose, escape, False, skip_header)
    self.trim_space = trim_space

  def column_count_error(self, raw: Sequence[str], expected: int) -> str:
    # be/src/exec/csv_scanner.cpp; the delimiters are printed as byte values.
    return ('Value count does not match column count. Expect %d, but got %d. Column '
            'delimiter: %d,Row delimiter: %d.' % (expected, len(raw), self.sep[0],
                                                  self.delim[0]))

  def _scan(self, body: bytes):
    """Yields ``(record bytes, [(field bytes, quoted, raw bytes)])``; ``trim_space`` applied.

    ``\\N`` is NULL when it is the whole unquoted field as written (before unescaping)."""
    enc, esc, sep, delim = self.enclose, self.escape, self.sep, self.delim
    n, sl, dl = len(body), len(sep), len(delim)
    trim = self.trim_space
    i = 0
    while i < n:
      start = i
      fields = []
      cur, quoted, in_quote, close_len = bytearray(), False, False, -1
      field_start = i

      def finish():
        if quoted and trim:
          return bytes(cur[:close_len]) + bytes(cur[close_len:]).rstrip(b' ')
        return bytes(cur).strip(b' ') if trim else bytes(cur)
      while i < n:
        c = body[i]
        if in_quote:
          if esc is not None and c == esc and i + 1 < n:
            cur.append(body[i + 1])
            i += 2
          elif c == enc and i + 1 < n and body[i + 1] == enc:
            cur.append(enc)
            i += 2
          elif c == enc:
            in_quote, close_len = False, len(cur)
            i += 1
          else:
            cur.append(c)
            i += 1
          continue
        if body.startswith(delim, i):
          break
        if body.startswith(sep, i):
          fields.append((finish(), quoted, body[field_start:i]))
          cur, quoted, close_len = bytearray(), False, -1
          i += sl
          field_start = i
          continue
        if enc is not None and c == enc and not quoted and not (
            cur.strip(b' ') if trim else cur):
          in_quote, quoted, cur = True, True, bytearray()
          i += 1
          continue
        if esc is not None and c == esc and i + 1 < n:
          cur.append(body[i + 1])
          i += 2
          continue
        cur.append(c)
        i += 1
      fields.append((finish(), quoted, body[field_start:i]))
      yield body[start:i], fields
      i += dl

  def read(self, body: bytes) -> Iterator[Record]:
    skip = self.skip_lines
    simple = self.enclose is None and self.escape is None
    records = self._plain_records(body) if simple else self._scan(body)
    for line, fields in records:
      if skip > 0:
        skip -= 1
        continue
      if not line:
        continue  # "always skip blank lines"
      try:
        src = line.decode('utf-8')
      except UnicodeDecodeError:
        yield Record(None, 'Invalid UTF-8 row', line.decode('utf-8', 'replace'))
        continue
      values: List[Optional[str]] = []
      raw: List[str] = []
      for f in fields:
        quoted = False
        written = f
        if not simple:
          f, quoted, written = f
        if self.trim_space:
          written = written.strip(b' ')
          if not quoted:
            f = f.strip(b' ')
        raw.append(f.decode('utf-8', 'replace'))
        values.append(None if written == NULL_FORMAT else f.decode('utf-8'))
      yield Record(values, None, src, raw)


# --- Arrow ---------------------------------------------------------------------------------


class ArrowFormatError(ValueError):
  """The body is not a readable Arrow IPC stream; the message is Doris's."""


def _py_value(value: Any) -> Any:
  """An Arrow scalar as the text / number the column converters take."""
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  if isinstance(value, datetime.datetime):
    if value.tzinfo is not None:
      value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value.isoformat(' ')
  if isinstance(value, (datetime.date, datetime.time)):
    return value.isoformat()
  if isinstance(value, decimal.Decimal):
    return format(value, 'f')
  if isinstance(value, (bytes, bytearray, memoryview)):
    return bytes(value).decode('utf-8', 'replace')
  if isinstance(value, datetime.timedelta):
    return str(value)
  if isinstance(value, list):
    return [_py_value(v) for v in value]
  if isinstance(value, tuple):
    return [_py_value(v) for v in value]
  if isinstance(value, dict):
    return {str(k): _py_value(v) for k, v in value.items()}
  return str(value)


def read_arrow(body: bytes):
  """Reads an Arrow IPC stream: returns ``(field names, iterator of row dicts)``.

  Raises:
    ArrowFormatError: ``failed to open stream reader: ...`` / ``failed to read batch: ...``
      with Arrow's own message (pyarrow wraps the same Arrow C++ reader Doris uses).
  """
  if not body:
    return [], iter(())
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  import pyarrow.compute as pc  # pylint: disable=import-outside-toplevel
  try:
    reader = pa.ipc.open_stream(pa.py_buffer(body))
  except (pa.ArrowException, OSError, ValueError) as e:
    raise ArrowFormatError('failed to open stream reader: %s' % e) from e
  try:
    batches = list(reader)
  except (pa.ArrowException, OSError, ValueError) as e:
    raise ArrowFormatError('failed to read batch: %s' % e) from e
  names = list(reader.schema.names)

  def column(arr):
    if pa.types.is_timestamp(arr.type) and arr.type.unit == 'ns':
      arr = pc.cast(arr, pa.timestamp('us', arr.type.tz), safe=False)
    if pa.types.is_dictionary(arr.type):
      arr = arr.dictionary_decode()
    return [_py_value(v) for v in arr.to_pylist()]

  def rows():
    for batch in batches:
      cols = [column(batch.column(i)) for i in range(batch.num_columns)]
      for values in zip(*cols):
        yield dict(zip(names, values))
  return names, rows()


def count_arrow_rows(body: bytes) -> int:
  """Count-only mode: rows of an Arrow stream (0 for an unreadable one)."""
  if not body:
    return 0
  import pyarrow as pa  # pylint: disable=import-outside-toplevel
  try:
    return sum(b.num_rows for b in pa.ipc.open_stream(pa.py_buffer(body)))
  except (pa.ArrowException, OSError, ValueError):
    return 0


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
