"""Typed conversion of loaded values into a column's Doris type.

Follows Doris's rules for Stream Load data quality
(https://doris.apache.org/docs/data-operate/import/handling-messy-data and
https://doris.apache.org/docs/data-operate/import/load-strict-mode):

- a value that cannot be converted becomes NULL in non-strict mode, and the row is filtered
  in strict mode (``strict_mode: true``) unless the source value was itself NULL;
- NULL into a NOT NULL column filters the row;
- a string longer than VARCHAR(n)/CHAR(n) (in bytes) filters the row in both modes.

Each converter returns the value stored in SQLite: Python int/float/str, with DECIMAL kept
as its canonical text (so ``12.50`` stays exact) and DATE/DATETIME as ISO text.
"""

import datetime
import decimal
from typing import Any, Callable, Optional, Tuple

import orjson

from stream_load_emulator.schema import Column


class ConversionError(ValueError):
  """A value does not fit the column's type."""


_INT_RANGES = {
    'TINYINT': (-2**7, 2**7 - 1),
    'SMALLINT': (-2**15, 2**15 - 1),
    'INT': (-2**31, 2**31 - 1),
    'INTEGER': (-2**31, 2**31 - 1),
    'BIGINT': (-2**63, 2**63 - 1),
    'LARGEINT': (-2**127, 2**127 - 1),
}
_STRING_TYPES = frozenset({'CHAR', 'VARCHAR', 'STRING', 'TEXT'})
_FLOAT_TYPES = frozenset({'FLOAT', 'DOUBLE'})
_DECIMAL_TYPES = frozenset({'DECIMAL', 'DECIMALV2', 'DECIMALV3', 'DECIMAL32', 'DECIMAL64',
                            'DECIMAL128', 'DECIMAL128I', 'DECIMAL256', 'NUMERIC'})
_DATE_TYPES = frozenset({'DATE', 'DATEV2'})
_DATETIME_TYPES = frozenset({'DATETIME', 'DATETIMEV2', 'TIMESTAMP'})
# BITMAP, HLL, QUANTILE_STATE, IPV4/6, ARRAY, MAP, STRUCT, VARIANT: kept as text.
_BOOL_TYPES = frozenset({'BOOLEAN', 'BOOL'})


def sqlite_type(column: Column) -> str:
  """The declared SQLite type; DECIMAL columns get a declared type the reader converts."""
  t = column.type_name
  if t == 'LARGEINT':
    # BLOB affinity (no "INT" in the name): 64-bit values stay integers and wider ones stay
    # their exact decimal text; INTEGER affinity would turn the text into a lossy REAL.
    return 'DORIS_WIDE_BLOB'
  if t in _INT_RANGES or t in _BOOL_TYPES:
    return 'INTEGER'
  if t in _FLOAT_TYPES:
    return 'REAL'
  if t in _DECIMAL_TYPES:
    return 'DORIS_DECIMAL'
  return 'TEXT'


def _to_int(value: Any, lo: int, hi: int) -> int:
  if isinstance(value, bool):
    result = int(value)
  elif isinstance(value, int):
    result = value
  elif isinstance(value, float):
    if not value.is_integer():
      raise ConversionError('not an integer')
    result = int(value)
  elif isinstance(value, str):
    text = value.strip()
    try:
      result = int(text)
    except ValueError:
      # Doris casts '12.0' and '1e3' to integers; '12.5' does not fit.
      try:
        d = decimal.Decimal(text)
      except decimal.InvalidOperation as e:
        raise ConversionError('not a number') from e
      if not d.is_finite() or d != d.to_integral_value():
        raise ConversionError('not an integer') from None
      result = int(d)
  else:
    raise ConversionError('not a number')
  if not lo <= result <= hi:
    raise ConversionError('out of range')
  return result


def _fit_int64(value: int):
  return value if -2**63 <= value < 2**63 else str(value)


def _to_float(value: Any) -> float:
  if isinstance(value, bool):
    return float(value)
  if isinstance(value, (int, float)):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value.strip())
    except ValueError as e:
      raise ConversionError('not a number') from e
  raise ConversionError('not a number')


def _to_decimal(value: Any, precision: int, scale: int) -> str:
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    raise ConversionError('not a decimal')
  try:
    d = decimal.Decimal(value.strip() if isinstance(value, str) else repr(value)
                        if isinstance(value, float) else value)
  except decimal.InvalidOperation as e:
    raise ConversionError('not a decimal') from e
  if not d.is_finite():
    raise ConversionError('not a decimal')
  q = d.quantize(decimal.Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP)
  digits = len(q.as_tuple().digits)
  integer_digits = max(digits - scale, 0) if q != 0 else 0
  if integer_digits > precision - scale:
    raise ConversionError('out of range for DECIMAL(%d, %d)' % (precision, scale))
  return format(q, 'f')


_DATE_FORMATS = ('%Y-%m-%d', '%Y%m%d', '%Y/%m/%d')
_DATETIME_FORMATS = ('%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%d %H:%M:%S', '%Y-%m-%dT%H:%M:%S.%f',
                     '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M', '%Y%m%d%H%M%S', '%Y-%m-%d',
                     '%Y%m%d', '%Y/%m/%d %H:%M:%S', '%Y/%m/%d')


def _parse_datetime(value: Any) -> datetime.datetime:
  if not isinstance(value, str):
    raise ConversionError('not a date')
  text = value.strip()
  if text.endswith('Z'):
    text = text[:-1]
  elif len(text) > 19 and text[-6] in '+-' and text[-3] == ':':
    text = text[:-6]  # Doris drops an explicit offset when no time_zone is set.
  try:
    return datetime.datetime.fromisoformat(text)  # fast path: ISO forms, 'T' or ' '
  except ValueError:
    pass
  for fmt in _DATETIME_FORMATS:
    try:
      return datetime.datetime.strptime(text, fmt)
    except ValueError:
      continue
  raise ConversionError('not a valid datetime')


def _to_date(value: Any) -> str:
  return _parse_datetime(value).date().isoformat()


def _to_datetime(value: Any, precision: int) -> str:
  dt = _parse_datetime(value)
  text = dt.replace(tzinfo=None).isoformat(' ', 'seconds')
  if precision:
    text += '.' + ('%06d' % dt.microsecond)[:precision]
  return text


def _to_string(value: Any, max_bytes: Optional[int]) -> str:
  if isinstance(value, str):
    text = value
  elif isinstance(value, bool):
    text = 'true' if value else 'false'
  elif isinstance(value, (int, float)):
    text = str(value)
  else:
    text = orjson.dumps(value).decode()
  if max_bytes is not None and len(text.encode('utf-8')) > max_bytes:
    raise ConversionError('the length of input is too long than schema')
  return text


def _to_bool(value: Any) -> int:
  if isinstance(value, bool):
    return int(value)
  if isinstance(value, (int, float)) and value in (0, 1):
    return int(value)
  if isinstance(value, str) and value.strip().lower() in ('true', 'false', '1', '0'):
    return int(value.strip().lower() in ('true', '1'))
  raise ConversionError('not a boolean')


def _to_json_text(value: Any) -> str:
  if isinstance(value, str):
    try:
      orjson.loads(value)
    except orjson.JSONDecodeError as e:
      raise ConversionError('not valid json') from e
    return value
  return orjson.dumps(value).decode()


def make_converter(column: Column) -> Callable[[Any], Any]:
  """Returns ``f(value) -> stored value`` raising ConversionError when it does not fit."""
  t = column.type_name
  if t == 'LARGEINT':
    lo, hi = _INT_RANGES[t]
    # SQLite integers are 64-bit: wider LARGEINT values are kept as their decimal text.
    return lambda v: _fit_int64(_to_int(v, lo, hi))
  if t in _INT_RANGES:
    lo, hi = _INT_RANGES[t]
    return lambda v: _to_int(v, lo, hi)
  if t in _FLOAT_TYPES:
    return _to_float
  if t in _DECIMAL_TYPES:
    precision = int(column.params[0]) if column.params else 9
    scale = int(column.params[1]) if len(column.params) > 1 else 0
    return lambda v: _to_decimal(v, precision, scale)
  if t in _DATE_TYPES:
    return _to_date
  if t in _DATETIME_TYPES:
    precision = int(column.params[0]) if column.params else 0
    return lambda v: _to_datetime(v, precision)
  if t in _BOOL_TYPES:
    return _to_bool
  if t in ('JSON', 'JSONB'):
    return _to_json_text
  if t in ('CHAR', 'VARCHAR'):
    max_bytes = int(column.params[0]) if column.params else (1 if t == 'CHAR' else 65533)
    return lambda v: _to_string(v, max_bytes)
  return lambda v: _to_string(v, None)


def convert(converter: Callable[[Any], Any], column: Column, value: Any,
            strict: bool) -> Tuple[bool, Any, Optional[str]]:
  """Applies Doris's NULL / strict-mode rules around ``converter``.

  Returns:
    ``(ok, stored_value, reason)``; ``ok`` False means the row is filtered for ``reason``.
  """
  if value is None:
    if not column.nullable:
      return False, None, ('column(%s) values is null while columns is not nullable'
                           % column.name)
    return True, None, None
  try:
    return True, converter(value), None
  except ConversionError as e:
    shown = value if isinstance(value, str) else orjson.dumps(value).decode()
    if 'too long' in str(e):
      return False, None, ('column_name[%s], the length of input is too long than schema. '
                           'first 32 bytes of input str: [%s] schema length: %s; actual '
                           'length: %d; ' % (column.name, shown[:32], column.params[0]
                                             if column.params else '',
                                             len(shown.encode('utf-8'))))
    if strict:
      return False, None, ('column(%s) value is incorrect while strict mode is true, src '
                           'value is %s' % (column.name, shown))
    if not column.nullable:
      return False, None, ('column(%s) values is null while columns is not nullable, src '
                           'value is %s' % (column.name, shown))
    return True, None, None
