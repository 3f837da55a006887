"""Body formats: encode cost and bytes per row of JSON lines, CSV and Arrow on the same rows.

Two kinds of rows, as the sink meets them:
  * kafka: ~1 KB JSON records read from Kafka (``Row.raw`` holds their bytes: JSON lines reuse
    them, CSV and Arrow must parse them);
  * dicts: ~920-byte mixed-type rows (the sink benchmark's) (CDC rows, rows given a sequence column: every
    format encodes them).
Each format encodes 20 batches of 10,000 rows; the figure is the best of 3 repetitions.

Last line: ``formats: json <a> us/row <x> B/row, csv <b> us/row <y> B/row, arrow <c> us/row <z>
B/row (kafka rows)``.  Run: ``.venv/bin/python bench/formats_bench.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Dict, List, Tuple

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.e2e_bench import make_record  # pylint: disable=wrong-import-position
from bench.sink_bench import make_rows  # pylint: disable=wrong-import-position
from transforms.stream_load.bodies import LOAD_FORMATS, encode_rows  # pylint: disable=wrong-import-position
from transforms.types import Row  # pylint: disable=wrong-import-position

BATCHES, ROWS = 20, 10_000


def kafka_rows() -> List[List[Row]]:
  batches = []
  for b in range(BATCHES):
    batch = []
    for i in range(b * ROWS, (b + 1) * ROWS):
      raw = make_record(i)
      batch.append(Row('bench.events', orjson.loads(raw), 'upsert', 't', 0, i, len(raw), raw))
    batches.append(batch)
  return batches


def dict_rows() -> List[List[Row]]:
  return [[Row('bench.orders', fields, 'upsert', 't', 0, i, 0)
           for i, fields in enumerate(make_rows(ROWS, b))] for b in range(BATCHES)]


def measure(batches: List[List[Row]], load_format: str) -> Tuple[float, float]:
  """(microseconds per row, body bytes per row), best of 3."""
  best = float('inf')
  size = 0
  for _ in range(3):
    started = time.perf_counter()
    size = sum(len(encode_rows(batch, load_format=load_format).body) for batch in batches)
    best = min(best, time.perf_counter() - started)
  rows = sum(len(batch) for batch in batches)
  return best / rows * 1e6, size / rows


def main() -> None:
  global BATCHES, ROWS  # pylint: disable=global-statement
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--batches', type=int, default=BATCHES)
  parser.add_argument('--rows', type=int, default=ROWS, help='rows a batch')
  args = parser.parse_args()
  BATCHES, ROWS = args.batches, args.rows
  results: Dict[str, Dict[str, Tuple[float, float]]] = {}
  for kind, make in (('kafka', kafka_rows), ('dicts', dict_rows)):
    batches = make()
    results[kind] = {fmt: measure(batches, fmt) for fmt in LOAD_FORMATS}
    print(kind + ': ' + ', '.join(f'{fmt} {us:.2f} us/row {size:.0f} B/row'
                                  for fmt, (us, size) in results[kind].items()))
  kafka = results['kafka']
  print('formats: ' + ', '.join(f'{fmt} {us:.2f} us/row {size:.0f} B/row'
                                for fmt, (us, size) in kafka.items()) + ' (kafka rows)')


if __name__ == '__main__':
  main()
