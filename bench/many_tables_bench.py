"""Many tables: the same rows into 300 tables and into 4, by the whole-database job.

A Debezium MySQL database's topics (``<run>.shop.<table>``, one per table, ~250-byte rows; a
table's rows in one partition, as Debezium writes them -- the 4 tables' over their topic's
partitions) are produced to the local Kafka (librdkafka's mock cluster, a new one for each run),
and the job a whole-database sync runs
(``--topic_pattern``, ``--cdc_format=debezium``, ``--table_template``, defaults otherwise:
10,000-row batches, 4 flush workers, exactly-once) loads them into the local Stream Load server
(its own process, count-only).  The same number of rows goes once into ``--tables`` tables (300)
and once into 4, in pairs whose order alternates, in this one process; the tables exist
beforehand (their creation is not what is measured).

Each run is the whole ``run_pipeline`` call (start-up included); its rows/s and the CPU seconds
of this process are printed.  The last line reads
``many_tables: <tables> tables at <ratio>x the rows/s of 4 (min-median-max of <n> pairs), CPU
<a>/<b> s``.
Run: ``.venv/bin/python bench/many_tables_bench.py [--records 600000] [--tables 300]
[--pairs 3]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import time
from typing import List, Tuple

import orjson

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.sink_bench import PASSWORD, emulator  # pylint: disable=wrong-import-position
from devtools.local_kafka import KafkaCluster  # pylint: disable=wrong-import-position
from pipelines.kafka_to_doris import run_pipeline  # pylint: disable=wrong-import-position

DB = 'shop'


def _record(table: str, i: int) -> Tuple[bytes, bytes]:
  after = {'id': i, 'user_id': i % 9973, 'amount': (i % 1000) / 10, 'status': 'paid',
           'ts': '2026-11-23 10:00:00', 'note': f'{i:08d}' * 12}
  value = {'op': 'c', 'before': None, 'after': after, 'ts_ms': 1,
           'source': {'connector': 'mysql', 'db': DB, 'table': table,
                      'file': 'mysql-bin.000001', 'pos': 4 + i, 'row': 0}}
  return orjson.dumps({'id': i}), orjson.dumps(value)


def _tables(count: int) -> List[str]:
  return [f't_{n:03d}' for n in range(count)]


def _produce(kafka: KafkaCluster, run: str, tables: List[str], records: int) -> None:
  """Many tables: one partition each, as Debezium makes them; few: their rows over the topic's
  partitions by key (a mock partition keeps only a few MiB)."""
  per_table = records // len(tables)
  for table in tables:
    pairs = [_record(table, i) for i in range(per_table)]
    kafka.produce(f'{run}.{DB}.{table}', [v for _, v in pairs], keys=[k for k, _ in pairs],
                  partition=0 if len(tables) > kafka.num_partitions else None)


def _cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _run(kafka: KafkaCluster, fe_url: str, run: str, tables: List[str], records: int
         ) -> Tuple[float, float]:
  """One job over the run's topics: (rows/s, CPU seconds)."""
  _produce(kafka, run, tables, records)
  expected = records // len(tables) * len(tables)
  argv = [f'--bootstrap_servers={kafka.bootstrap_servers}', f'--topic_pattern={run}\\..*',
          f'--group_id={run}', '--stop_at_end', f'--fe_nodes={fe_url}', '--user=root',
          f'--password={PASSWORD}', '--cdc_format=debezium',
          '--table_template=ods.{db}__{table}', '--progress_interval_secs=0',
          f'--dead_letter_path=/tmp/many-tables-bench-{run}']
  cpu, started = _cpu(), time.perf_counter()
  summary = run_pipeline(argv)
  secs, cpu = time.perf_counter() - started, _cpu() - cpu
  assert summary.totals.get('rows_loaded') == expected, (summary.totals, expected)
  return expected / secs, cpu


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--records', type=int, default=600_000)
  parser.add_argument('--tables', type=int, default=300)
  parser.add_argument('--pairs', type=int, default=3)
  args = parser.parse_args()
  logging.basicConfig(level=logging.WARNING)
  many, few = _tables(args.tables), _tables(4)
  import bench.sink_bench as sink_bench
  sink_bench.SCHEMA = 'CREATE DATABASE ods;\n' + ''.join(
      f'CREATE TABLE ods.{DB}__{t} (id BIGINT, user_id BIGINT, amount DOUBLE, status VARCHAR(8), '
      f'ts DATETIME, note VARCHAR(100)) UNIQUE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1;\n'
      for t in many)
  ratios, cpus = [], []
  with emulator() as fe_url:
    for pair in range(args.pairs):
      order = [('many', many), ('few', few)] if pair % 2 == 0 else [('few', few), ('many', many)]
      rates = {}
      for name, tables in order:
        kafka = KafkaCluster(compression='lz4')  # each run on a cluster of its own topics only
        try:
          rate, cpu = _run(kafka, fe_url, f'r{pair}{name}', tables, args.records)
        finally:
          kafka.close()
        rates[name] = (rate, cpu)
        print(f'pair {pair + 1}: {len(tables)} tables: {rate:.0f} rows/s, CPU {cpu:.1f} s',
              flush=True)
      ratios.append(rates['many'][0] / rates['few'][0])
      cpus.append((rates['many'][1], rates['few'][1]))
  low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
  cpu_many = statistics.median(c for c, _ in cpus)
  cpu_few = statistics.median(c for _, c in cpus)
  print(f'many_tables: {args.tables} tables at {low:.2f}-{mid:.2f}-{high:.2f}x the rows/s of 4 '
        f'(min-median-max of {len(ratios)} pairs), CPU {cpu_many:.1f}/{cpu_few:.1f} s')


if __name__ == '__main__':
  main()
