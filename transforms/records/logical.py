"""Logical values -> the text Doris / StarRocks Stream Load takes in a JSON body.

Pure functions shared by the Avro and Protobuf decoders:

* decimals -> exact plain-notation text (``'12.30'``, never ``'1.23E+1'``);
* instants -> ``'YYYY-MM-DD HH:MM:SS.ffffff'`` (``DATETIME(6)``), **in UTC**: an
  epoch count is formatted as UTC wall-clock time (Debezium's
  ``Timestamp``/``MicroTimestamp`` carry the database's DATETIME that way, so
  the original value comes back unchanged), a zone-aware value is converted
  to UTC first, a naive one (Avro ``local-timestamp-*``) is kept as it is;
* dates -> ``'YYYY-MM-DD'``; times of day -> ``'HH:MM:SS.ffffff'`` (hours
  may pass 24 or be negative: MySQL ``TIME`` through Debezium);
* bytes -> standard base64 text, as Kafka Connect's JsonConverter writes them.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import uuid
from typing import Any

__all__ = ['decimal_text', 'unscaled_decimal_text', 'datetime_text', 'date_text', 'time_text',
           'epoch_millis_text', 'epoch_micros_text', 'epoch_nanos_text', 'epoch_days_text',
           'day_millis_text', 'day_micros_text', 'day_nanos_text', 'zoned_text', 'bytes_text',
           'any_text']

_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_DATE = datetime.date(1970, 1, 1)
_UTC = datetime.timezone.utc


def decimal_text(value: decimal.Decimal) -> str:
  """An exact decimal in plain notation (``Decimal('1E+3')`` -> ``'1000'``)."""
  return format(value, 'f')


def unscaled_decimal_text(unscaled: bytes, scale: int) -> str:
  """A big-endian two's-complement unscaled integer and its scale, as exact text."""
  number = int.from_bytes(unscaled, 'big', signed=True)
  return format(decimal.Decimal(f'{number}E{-int(scale)}'), 'f')


def datetime_text(value: datetime.datetime) -> str:
  """``'YYYY-MM-DD HH:MM:SS.ffffff'``; a zone-aware value is converted to UTC."""
  if value.tzinfo is not None:
    value = value.astimezone(_UTC).replace(tzinfo=None)
  return value.isoformat(' ', 'microseconds')


def date_text(value: datetime.date) -> str:
  return value.isoformat()


def time_text(value: datetime.time) -> str:
  return value.replace(tzinfo=None).isoformat('microseconds')


def epoch_millis_text(millis: int) -> str:
  return (_EPOCH + datetime.timedelta(milliseconds=millis)).isoformat(' ', 'microseconds')


def epoch_micros_text(micros: int) -> str:
  return (_EPOCH + datetime.timedelta(microseconds=micros)).isoformat(' ', 'microseconds')


def epoch_nanos_text(nanos: int) -> str:
  """Nanoseconds since the epoch, floored to the microsecond (``DATETIME(6)``)."""
  return epoch_micros_text(nanos // 1000)


def epoch_days_text(days: int) -> str:
  return (_EPOCH_DATE + datetime.timedelta(days=days)).isoformat()


def _day_micros_text(micros: int) -> str:
  sign = '-' if micros < 0 else ''
  micros = abs(micros)
  seconds, fraction = divmod(micros, 1_000_000)
  minutes, second = divmod(seconds, 60)
  hour, minute = divmod(minutes, 60)
  return f'{sign}{hour:02d}:{minute:02d}:{second:02d}.{fraction:06d}'


def day_millis_text(millis: int) -> str:
  return _day_micros_text(millis * 1000)


def day_micros_text(micros: int) -> str:
  return _day_micros_text(micros)


def day_nanos_text(nanos: int) -> str:
  return _day_micros_text(nanos // 1000)


def zoned_text(value: str) -> str:
  """An ISO-8601 timestamp with an offset (Debezium ``ZonedTimestamp``) in UTC.

  Text that is no such timestamp is returned unchanged (the server decides).
  """
  try:
    parsed = datetime.datetime.fromisoformat(value)
  except ValueError:
    return value
  return datetime_text(parsed)


def bytes_text(value: bytes) -> str:
  return base64.b64encode(value).decode('ascii')


def any_text(value: Any) -> Any:
  """Any decoded value with its logical types made loadable, by Python type (nested too).

  Used where the schema cannot say which branch a value took (a union of
  several types).
  """
  kind = type(value)
  if kind is dict:
    return {k: any_text(v) for k, v in value.items()}
  if kind is list:
    return [any_text(v) for v in value]
  if kind is decimal.Decimal:
    return decimal_text(value)
  if kind is datetime.datetime:
    return datetime_text(value)
  if kind is datetime.date:
    return date_text(value)
  if kind is datetime.time:
    return time_text(value)
  if kind is bytes:
    return bytes_text(value)
  if isinstance(value, uuid.UUID):
    return str(value)
  return value
