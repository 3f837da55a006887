"""Sink benchmark: a Go loader's flush scenario, naive loader vs WriteToStreamLoad's sink.

The scenario (from a Go Kafka -> Doris loader whose serial flushes managed 21 MB in 5.5 s,
~4 MB/s): a stream of batches of its shape -- 22,838 rows of ~920
bytes of mixed-type JSON (~21 MB) each -- over several tables, loaded into the
local Stream Load server running in its own process with a cost model of a
small Doris cluster: every load costs a fixed overhead plus its bytes at
19 MB/s (Doris's documented example loads 40.9 MB in 2,144 ms), 3 BEs, each
running at most 2 loads at once.  So, as on a real cluster, parallel loads
and pooled connections matter, and the server itself (count-only mode: it
parses and counts, stores nothing) is never the bottleneck.

Measured in one run:
  * naive: that loader before its fixes -- dict -> ``json.dumps`` per
    row, serial flushes, a new connection per load;
  * sink: ``WriteToStreamLoad``'s DoFn at its defaults (4 flush workers, one
    pooled session, orjson in one pass), driven directly (setup/process/
    finish_bundle) so runner overhead is not counted;
  * client only: the same sink against the server without the cost model
    (encode + send + the server's count-only parse).

The last line reads ``sink: <MB/s> MB/s, <ratio>x vs naive``.
Run: ``.venv/bin/python bench/sink_bench.py [--batches 12] [--load_format csv|arrow]
[--group_commit sync_mode|async_mode] [--flush_workers N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from typing import Dict, Iterator, List, Tuple

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transforms.stream_load.sink import SinkSettings, _WriteBatchesFn  # pylint: disable=wrong-import-position
from transforms.stream_load import StreamLoadConfig  # pylint: disable=wrong-import-position
from transforms.types import Row  # pylint: disable=wrong-import-position
from transforms.runtime import RunContext  # pylint: disable=wrong-import-position

SEED_ROWS = 22_838
TABLES = ['bench.orders', 'bench.events', 'bench.users']
PASSWORD = 'bench'
SCHEMA = """
CREATE DATABASE bench;
CREATE TABLE bench.orders (id BIGINT) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1;
CREATE TABLE bench.events (id BIGINT) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1;
CREATE TABLE bench.users (id BIGINT) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1;
"""
COST_FLAGS = ['--cost-fixed-overhead-ms', '50', '--cost-mb-per-sec', '19',
              '--cost-max-concurrent-loads-per-be', '2', '--num-bes', '3']


def make_rows(n: int, seed: int) -> List[dict]:
  """Rows of ~920 bytes of mixed types, like that loader's log lines."""
  rng = random.Random(seed)
  rows = []
  for i in range(n):
    rows.append({
        'id': seed * 10_000_000 + i,
        'user_id': rng.randrange(1_000_000),
        'amount': round(rng.random() * 1000, 2),
        'quantity': rng.randrange(100),
        'paid': rng.random() < 0.5,
        'coupon': None if rng.random() < 0.7 else f'C{rng.randrange(9999)}',
        'status': rng.choice(['created', 'paid', 'shipped', 'delivered']),
        'created_at': f'2026-02-05 15:{rng.randrange(60):02d}:{rng.randrange(60):02d}',
        'tags': [rng.choice('abcdefgh') * 3 for _ in range(4)],
        'address': {'city': f'city{rng.randrange(300)}', 'zip': f'{rng.randrange(99999):05d}'},
        'note': ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz ') for _ in range(560)),
    })
  return rows


@contextlib.contextmanager
def emulator(*flags: str) -> Iterator[str]:
  """Starts ``python -m stream_load_emulator`` in its own process; yields the FE URL."""
  import tempfile
  with tempfile.TemporaryDirectory() as tmp:
    schema = os.path.join(tmp, 'schema.sql')
    with open(schema, 'w', encoding='utf-8') as handle:
      handle.write(SCHEMA)
    process = subprocess.Popen(
        [sys.executable, '-m', 'stream_load_emulator', '--schema', schema, '--user', 'root',
         '--password', PASSWORD, '--count-only', '--log-level', 'WARNING', *flags],
        stdout=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
      fe_url = None
      for line in process.stdout:
        if line.startswith('FE ') and fe_url is None:
          fe_url = line.split()[1]
        if line.strip() == 'READY':
          break
      if fe_url is None:
        raise RuntimeError('the emulator did not start')
      yield fe_url
    finally:
      process.terminate()
      process.wait(10)


def naive_load(fe_url: str, batches: List[Tuple[str, List[dict]]]) -> None:
  """That loader before its fixes: json.dumps per row, serial, a new connection per load."""
  for n, (table, rows) in enumerate(batches):
    body = '\n'.join(json.dumps(dict(row)) for row in rows).encode()
    db, tbl = table.split('.')
    headers = {'label': f'naive-{n}-{time.time_ns()}', 'format': 'json',
               'read_json_by_line': 'true', 'Expect': '100-continue'}
    probe = requests.put(f'{fe_url}/api/{db}/{tbl}/_stream_load', data=b'', headers=headers,
                         auth=('root', PASSWORD), allow_redirects=False, timeout=600)
    location = requests.utils.urlparse(probe.headers['Location'])
    be = f'{location.scheme}://{location.hostname}:{location.port}'
    result = requests.put(f'{be}/api/{db}/{tbl}/_stream_load', data=body, headers=headers,
                          auth=('root', PASSWORD), timeout=600).json()
    if result['Status'] != 'Success':
      raise RuntimeError(f'naive load failed: {result}')


def sink_load(fe_url: str, batches: List[Tuple[str, List[Row]]], run: str,
              load_format: str = 'json', group_commit: str = 'off_mode',
              flush_workers: int = 4) -> Dict[str, int]:
  """WriteToStreamLoad's DoFn (defaults but ``flush_workers``), without a runner around it."""
  config = StreamLoadConfig(fe_nodes=(fe_url,), user='root', password=PASSWORD,
                            load_format=load_format, group_commit=group_commit)
  settings = SinkSettings(config, flush_workers=flush_workers, label_prefix=f'bench-{run}')
  fn = _WriteBatchesFn(settings, RunContext(), 'bench', hold_across_bundles=False)
  fn.setup()
  loaded = 0
  try:
    fn.start_bundle()
    outputs = []
    for key, rows in batches:
      outputs.extend(fn.process(((key, 0), rows)))
    outputs.extend(fn.finish_bundle() or [])
    for value in outputs:
      value = getattr(value, 'value', value)
      if hasattr(value, 'status'):
        loaded += value.loaded_rows
      else:
        raise RuntimeError(f'sink produced a dead letter: {value}')
  finally:
    fn.teardown()
  return {'rows': loaded}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batches', type=int, default=12,
                      help='batches of --batch_rows rows (default 12)')
  parser.add_argument('--batch_rows', type=int, default=SEED_ROWS,
                      help=f'rows a batch (default {SEED_ROWS:,}, the seed\'s)')
  parser.add_argument('--load_format', default='json', choices=['json', 'csv', 'arrow'])
  parser.add_argument('--group_commit', default='off_mode',
                      choices=['off_mode', 'sync_mode', 'async_mode'])
  parser.add_argument('--flush_workers', type=int, default=4,
                      help='loads in flight (default 4, the pipeline\'s default; the cost model '
                           'runs 6 at once)')
  args = parser.parse_args()
  print(f'preparing {args.batches} batches of {args.batch_rows} rows ...', flush=True)
  dict_batches = [(TABLES[i % len(TABLES)], make_rows(args.batch_rows, i)) for i in range(args.batches)]
  row_batches = []
  for b, (table, rows) in enumerate(dict_batches):
    row_batches.append((table, [Row(table, r, 'upsert', 'bench', b, i, 0) for i, r in
                                enumerate(rows)]))
  total_rows = args.batches * args.batch_rows
  total_mb = sum(len(json.dumps(r)) + 1 for _, rows in dict_batches for r in rows) / 1e6
  print(f'{total_rows} rows, {total_mb:.1f} MB ({total_mb / args.batches:.1f} MB a batch)')

  with emulator(*COST_FLAGS) as fe_url:
    started = time.perf_counter()
    naive_load(fe_url, dict_batches)
    naive_secs = time.perf_counter() - started
    started = time.perf_counter()
    result = sink_load(fe_url, row_batches, 'cost', args.load_format, args.group_commit,
                       args.flush_workers)
    sink_secs = time.perf_counter() - started
  assert result['rows'] == total_rows, result
  with emulator() as fe_url:
    started = time.perf_counter()
    sink_load(fe_url, row_batches, 'client', args.load_format, args.group_commit,
              args.flush_workers)
    client_secs = time.perf_counter() - started

  naive_mbps = total_mb / naive_secs
  sink_mbps = total_mb / sink_secs
  print('cost model: 50 ms + bytes at 19 MB/s per load, 3 BEs x 2 concurrent loads')
  print(f'naive (json.dumps per row, serial, new connection per load): {naive_mbps:.1f} MB/s '
        f'({naive_secs:.2f} s, {total_rows / naive_secs:.0f} rows/s)')
  print(f'client only (encode + send, count-only server, no cost model): '
        f'{total_mb / client_secs:.1f} MB/s ({total_rows / client_secs:.0f} rows/s)')
  suffix = f' (flush_workers={args.flush_workers})' if args.flush_workers != 4 else ''
  print(f'sink: {sink_mbps:.1f} MB/s, {sink_mbps / naive_mbps:.1f}x vs naive{suffix}')


if __name__ == '__main__':
  main()
