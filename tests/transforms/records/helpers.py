"""Builders of Kafka records and CDC envelopes for the records tests."""

from typing import List, Optional

import orjson

from transforms.types import KafkaChunk, KafkaRecord


def record(value, offset: int = 0, topic: str = 'orders', partition: int = 0,
           key: Optional[bytes] = None) -> KafkaRecord:
  """A KafkaRecord; ``value`` may be bytes, None, or a JSON-able object."""
  if value is not None and not isinstance(value, bytes):
    value = orjson.dumps(value)
  return KafkaRecord(topic, partition, offset, key, value, 1_700_000_000_000)


def chunk(values: List, topic: str = 'orders', partition: int = 0,
          first_offset: int = 0) -> KafkaChunk:
  """A KafkaChunk of consecutive offsets starting at ``first_offset``."""
  records = [record(v, first_offset + i, topic, partition) for i, v in enumerate(values)]
  return KafkaChunk(topic, partition, first_offset, first_offset + len(values), records)


def debezium(op: str, before=None, after=None, db: str = 'shop', table: str = 'orders',
             wrap: bool = False) -> dict:
  """A Debezium change event, optionally wrapped like JsonConverter schemas.enable=true."""
  payload = {
      'before': before,
      'after': after,
      'source': {'version': '2.5.0.Final', 'connector': 'mysql', 'name': 'dbserver1',
                 'ts_ms': 1700000000000, 'db': db, 'table': table, 'server_id': 223344,
                 'file': 'mysql-bin.000003', 'pos': 484, 'row': 0},
      'op': op,
      'ts_ms': 1700000000123,
      'transaction': None,
  }
  if wrap:
    return {'schema': {'type': 'struct', 'name': f'dbserver1.{db}.{table}.Envelope',
                       'optional': False, 'fields': []},
            'payload': payload}
  return payload


def canal(kind: str, data, old=None, db: str = 'shop', table: str = 'orders',
          is_ddl: bool = False, pk_names=('id',)) -> dict:
  """A Canal flat message (canal.mq.flatMessage=true)."""
  return {
      'data': data, 'database': db, 'es': 1700000000000, 'id': 7, 'isDdl': is_ddl,
      'mysqlType': {'id': 'int(11)', 'name': 'varchar(32)'},
      'old': old, 'pkNames': list(pk_names) if pk_names is not None else None,
      'sql': '', 'sqlType': {'id': 4, 'name': 12}, 'table': table, 'ts': 1700000000100,
      'type': kind,
  }


def maxwell(kind: str, data, old=None, db: str = 'shop', table: str = 'orders',
            **extra) -> dict:
  """A Maxwell message."""
  msg = {'database': db, 'table': table, 'type': kind, 'ts': 1700000000, 'xid': 940752,
         'commit': True, 'data': data}
  if old is not None:
    msg['old'] = old
  msg.update(extra)
  return msg
