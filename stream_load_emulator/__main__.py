"""``python -m stream_load_emulator``: run the local Stream Load server until SIGTERM/SIGINT.

Example::

    python -m stream_load_emulator --fe-port 8030 --be-port 8040 --data-dir /tmp/doris \\
        --schema pipelines/samples/demo_schema.sql --user root --password secret

Prints one line per node (``FE http://127.0.0.1:8030`` / ``BE ...``), the MySQL port
(``MYSQL 127.0.0.1:9030`` and the ``mysql -h ... -P ... -u ... -p`` line to connect with),
``DATA <dir>`` and ``READY``, so a parent process can wait for it. Faults can be switched at
run time with ``POST /_emulator/faults`` (JSON ``{"kind": ..., "times": ..., "node": ...}``)
on any node.
"""

import argparse
import logging
import signal
import sys
import threading

from stream_load_emulator import load as load_lib
from stream_load_emulator.cost import CostModel
from stream_load_emulator.load import MIB
from stream_load_emulator.server import DEFAULT_LABEL_KEEP_MAX_SECS
from stream_load_emulator.server import StreamLoadServer


def _ports(value):
  return [int(p) for p in value.split(',') if p.strip()]


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m stream_load_emulator',
                              description='Local Doris/StarRocks Stream Load server.')
  p.add_argument('--fe-port', type=_ports, default=None,
                 help='FE HTTP port(s), comma separated (default: free ports)')
  p.add_argument('--be-port', type=_ports, default=None,
                 help='BE HTTP port(s), comma separated (default: free ports)')
  p.add_argument('--num-fes', type=int, default=None, help='number of FEs (default 1)')
  p.add_argument('--num-bes', type=int, default=None, help='number of BEs (default 1)')
  p.add_argument('--query-port', type=int, default=None,
                 help='the FE\'s MySQL port (Doris query_port, 9030; default: a free port)')
  p.add_argument('--host', default='127.0.0.1', help='interface to listen on')
  p.add_argument('--data-dir', default=None, help='SQLite data directory (default: temp)')
  p.add_argument('--schema', action='append', default=[],
                 help='file of Doris DDL (CREATE DATABASE/TABLE); may repeat')
  p.add_argument('--user', default='root', help='accepted user')
  p.add_argument('--password', default='', help='accepted password')
  p.add_argument('--flavor', choices=('doris', 'starrocks'), default='doris')
  p.add_argument('--count-only', action='store_true',
                 help='count rows, store nothing (benchmarks)')
  p.add_argument('--cost-fixed-overhead-ms', type=float, default=None,
                 help='cost model: fixed time per load, ms')
  p.add_argument('--cost-mb-per-sec', type=float, default=None,
                 help='cost model: body throughput per load, MiB/s')
  p.add_argument('--cost-max-concurrent-loads-per-be', type=int, default=None,
                 help='cost model: concurrent loads per BE')
  p.add_argument('--label-keep-max-secs', type=float, default=DEFAULT_LABEL_KEEP_MAX_SECS,
                 help='how long finished labels are remembered (Doris: 43200)')
  p.add_argument('--max-body-mb', type=int, default=10240,
                 help='largest body a BE accepts, MiB (Doris streaming_load_max_mb)')
  p.add_argument('--group-commit-interval-ms', type=float,
                 default=load_lib.DEFAULT_GROUP_COMMIT_INTERVAL_MS,
                 help='Doris group commit interval for tables without the '
                 'group_commit_interval_ms property (Doris: 10000)')
  p.add_argument('--group-commit-data-bytes', type=int,
                 default=load_lib.DEFAULT_GROUP_COMMIT_DATA_BYTES,
                 help='Doris group commit size limit for tables without the '
                 'group_commit_data_bytes property (Doris docs: 64 MB)')
  p.add_argument('--tls-cert', default=None, help='PEM certificate: serve HTTPS')
  p.add_argument('--tls-key', default=None, help='PEM private key for --tls-cert')
  p.add_argument('--log-level', default='INFO')
  return p


def _num(explicit, ports):
  if explicit is not None:
    return explicit
  return len(ports) if ports else 1


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  logging.basicConfig(level=args.log_level, format='%(asctime)s %(levelname)s %(message)s')
  cost = None
  if any(v is not None for v in (args.cost_fixed_overhead_ms, args.cost_mb_per_sec,
                                 args.cost_max_concurrent_loads_per_be)):
    cost = CostModel(fixed_overhead_ms=args.cost_fixed_overhead_ms or 0.0,
                     mb_per_sec=args.cost_mb_per_sec or 19.0,
                     max_concurrent_loads_per_be=args.cost_max_concurrent_loads_per_be)
  schema_sql = ''
  for path in args.schema:
    with open(path, encoding='utf-8') as f:
      schema_sql += f.read() + '\n;\n'
  server = StreamLoadServer(
      schema_sql=schema_sql or None, data_dir=args.data_dir, user=args.user,
      password=args.password, flavor=args.flavor, host=args.host,
      num_fes=_num(args.num_fes, args.fe_port), num_bes=_num(args.num_bes, args.be_port),
      fe_ports=args.fe_port, be_ports=args.be_port, count_only=args.count_only,
      cost_model=cost, label_keep_max_secs=args.label_keep_max_secs,
      max_body_bytes=args.max_body_mb * MIB, tls_cert=args.tls_cert, tls_key=args.tls_key,
      group_commit_interval_ms=args.group_commit_interval_ms,
      group_commit_data_bytes=args.group_commit_data_bytes, query_port=args.query_port)
  stop = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())
  server.start()
  try:
    for url in server.fe_urls:
      print('FE %s' % url, flush=True)
    for url in server.be_urls:
      print('BE %s' % url, flush=True)
    print('MYSQL %s:%d' % (server.host, server.query_port), flush=True)
    print('mysql -h %s -P %d -u %s -p' % (server.host, server.query_port, server.user),
          flush=True)
    print('DATA %s' % server.data_dir, flush=True)
    print('READY', flush=True)
    stop.wait()
  finally:
    server.stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
