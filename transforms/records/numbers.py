"""Exact numbers: orjson reads JSON numbers as 64-bit ints or doubles.

Rows sent as their original bytes keep every digit; rows that must be
encoded again (CDC rows, array elements, rows given a sequence column) whose
numbers do not fit a double (``DECIMAL(38, 10)``, 20-digit integers) are
parsed again exactly, carrying those numbers as strings, which Doris and
StarRocks cast to the column type.  The test for "may have lost digits" is a
C-speed scan for a run of 16 digits or dots.
"""

from __future__ import annotations

import decimal
import json
from typing import Any

__all__ = ['has_inexact_number', 'exact_loads', 'NUMBER_CHARS', 'LONG_NUMBER']

_RISKY_TYPES = frozenset((float, dict, list))
# Maps digits and '.' to '0', every other byte to ' ': a double holds 15-17
# significant digits, so only a literal with a run of 16+ of them can lose some.
NUMBER_CHARS = bytes(0x30 if c in b'0123456789.' else 0x20 for c in range(256))
LONG_NUMBER = b'0' * 16


def has_inexact_number(value: Any) -> bool:
  """True if ``value`` (a row) holds a float that may have lost digits of its literal.

  A float whose shortest repr has 16+ characters may come from a literal with
  more significant digits than a double holds (or from an integer beyond 64
  bits, which orjson reads as a double). Literals of 17+ significant digits
  that round to a short double (``10000000000000001.0``) are not detected.
  """
  items = value.values() if type(value) is dict else value
  if _RISKY_TYPES.isdisjoint(map(type, items)):  # the common case, at C speed.
    return False
  for item in items:
    kind = type(item)
    if kind is float:
      if len(repr(item)) > 16:
        return True
    elif (kind is dict or kind is list) and has_inexact_number(item):
      return True
  return False


def exact_loads(value: bytes) -> Any:
  """Parses JSON keeping every digit: inexact numbers become strings.

  Doris and StarRocks cast JSON strings to the column type on load, so
  ``"12345678901234.123456"`` lands in a DECIMAL column exactly.
  """
  return _exact_numbers(json.loads(value, parse_float=decimal.Decimal))


def _exact_numbers(value: Any) -> Any:
  kind = type(value)
  if kind is dict:
    return {k: _exact_numbers(v) for k, v in value.items()}
  if kind is list:
    return [_exact_numbers(v) for v in value]
  if kind is decimal.Decimal:
    as_float = float(value)
    return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
  if kind is int and not -2**63 <= value < 2**64:
    return str(value)
  return value

