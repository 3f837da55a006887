"""``shard_of``: which shard of a table a row belongs to; pure.

A hot table can be spread over several batching keys (``shards`` in the
table config) so that many workers batch and load it.  All changes to one
key must stay on one shard, in order: the shard is a stable hash (CRC-32, the
same in every process and release) of the row's key columns, or of its Kafka
partition when the table has no key.
"""

from __future__ import annotations

import zlib
from typing import Sequence

from transforms.types import Row, fields_of

__all__ = ['shard_of']


def shard_of(row: Row, key_columns: Sequence[str], shards: int) -> int:
  """The shard (``0 <= shard < shards``) of ``row``."""
  if shards == 1:
    return 0
  if key_columns:
    fields = fields_of(row)
    key = '\x1f'.join(str(fields.get(column)) for column in key_columns)
  else:
    # No key: any spread keeps correctness; the partition keeps each one's order.
    key = f'{row.topic}\x1f{row.partition}'
  return zlib.crc32(key.encode('utf-8', 'replace')) % shards
