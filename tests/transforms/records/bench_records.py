"""Micro-benchmark of ParseRecords' per-row work on ~1 KB records (not a test).

Run: ``.venv/bin/python -m tests.transforms.records.bench_records [rows]``. Prints rows/s of
``RecordParser.parse_chunk`` and of the DoFn's ``process`` (no runner) per
input format, best of three; chunks of 500 records like the Kafka reader's.
"""

import random
import string
import sys
import time

import orjson

from transforms.records import RecordParser, Routing
from transforms.records.transform import _ParseRecordsFn
from transforms.types import KafkaChunk, KafkaRecord

_CHUNK_RECORDS = 500


def _row(rng: random.Random, i: int) -> dict:
  row = {'id': i, 'user_id': i * 7 % 1000, 'ts': '2026-11-23 09:00:00', 'amount': 123.45,
         'status': 'PAID'}
  k = 0
  while len(orjson.dumps(row)) < 1000:
    row[f'c{k}'] = ''.join(rng.choices(string.ascii_letters, k=40))
    k += 1
  return row


def _value(kind: str, row: dict, offset: int) -> bytes:
  table = f't{offset % 4}'
  if kind == 'plain':
    return orjson.dumps(row)
  if kind == 'plain+table_field':
    return orjson.dumps({**row, 'tbl': f'db.{table}'})
  if kind.startswith('debezium'):
    return orjson.dumps({'before': None, 'after': row, 'op': 'c', 'ts_ms': 1,
                         'source': {'db': 'shop', 'table': table}})
  if kind == 'canal':
    return orjson.dumps({'data': [row], 'database': 'shop', 'table': table, 'isDdl': False,
                         'type': 'INSERT', 'pkNames': ['id'], 'old': None, 'es': 1, 'ts': 1})
  return orjson.dumps({'database': 'shop', 'table': table, 'type': 'insert', 'ts': 1, 'xid': 1,
                       'data': row})


def _chunks(kind: str, rows: list, n: int) -> list:
  chunks = []
  for start in range(0, n, _CHUNK_RECORDS):
    records = [KafkaRecord('t', 0, off, None, _value(kind, rows[off % len(rows)], off), 0)
               for off in range(start, start + _CHUNK_RECORDS)]
    chunks.append(KafkaChunk('t', 0, start, start + _CHUNK_RECORDS, records))
  return chunks


def main(n: int = 100_000) -> None:
  rng = random.Random(1)
  rows = [_row(rng, i) for i in range(500)]
  cases = [('plain', Routing(table='db.t'), 'none'),
           ('plain+table_field', Routing(table_field='tbl'), 'none'),
           ('debezium', Routing(), 'debezium'),
           ('debezium/auto', Routing(), 'auto'),
           ('canal', Routing(), 'canal'),
           ('maxwell', Routing(), 'maxwell')]
  for kind, routing, cdc in cases:
    chunks = _chunks(kind, rows, n)
    parser = RecordParser(routing, cdc=cdc)
    fn = _ParseRecordsFn(parser)
    best_parse = best_fn = 0.0
    for _ in range(3):
      start = time.perf_counter()
      count = sum(parser.parse_chunk(c).chunk_read.count for c in chunks)
      best_parse = max(best_parse, count / (time.perf_counter() - start))
      start = time.perf_counter()
      for c in chunks:
        for _ in fn.process(c):
          pass
      best_fn = max(best_fn, count / (time.perf_counter() - start))
    print(f'{kind:18s} parse_chunk {best_parse:8.0f} rows/s   DoFn.process {best_fn:8.0f} rows/s'
          f'   ({len(chunks[0].records[0].value)} B values)')


if __name__ == '__main__':
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
