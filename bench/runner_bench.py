"""Runner benchmark: the e2e data through the local runner and a real embedded Flink, p1 and p2.

The e2e benchmark's records (~1 KB JSON, 4 tables over 8 lz4 topics of
librdkafka's mock cluster) are loaded into the local Stream Load server
(count-only, its own process) by ``python -m pipelines.kafka_to_doris
--stop_at_end`` run as a user runs it, three ways:

  * ``direct``: ``--runner=DirectRunner`` (the FnApiRunner in process);
  * ``flink p1`` / ``flink p2``: ``--runner=FlinkRunner --flink_master=[local]``
    with Beam's Flink job server (built from Maven coordinates,
    ``devtools.flink``) and ``--parallelism=1`` / ``2``, the Python SDK
    workers in processes of their own: ``--environment_type=EXTERNAL``
    against Beam's worker pool (``apache_beam.runners.worker.worker_pool_main``),
    which starts one worker process per environment Flink asks for
    (``--sdk_worker_parallelism``, set by the launcher so that each reading
    subtask has a worker process of its own; see ``pipelines.runners``).
    That is how Flink runs Python in a deployment: a worker-pool sidecar
    beside each TaskManager (Beam's Flink-on-Kubernetes setup), not LOOPBACK,
    where every worker shares the launcher's process and its one core.

Each run is split into start-up (launch to the first load) and steady state
(from the load that brings the rows loaded past 10% to the one past 90%, from
the server's own load log, so the end-of-input flush is left out too): rows/s
once rows flow, and CPU seconds of every process of the loader -- the command
line, the job server's JVM (Flink runs inside it), the worker pool and its
workers -- sampled from ``/proc`` at those two loads, per 100k rows.  The
server and the Kafka cluster serve both runners alike and are not counted
(their CPU is printed beside, with how busy the machine was).

Last line: ``runners: flink p1 <r1> rows/s (<a>x direct), flink p2 <r2> rows/s
(<b>x p1), cpu/row flink <c>x direct`` (cpu/row: the p1 run's steady-state CPU
per row against the direct run's).

Run: ``.venv/bin/python bench/runner_bench.py [--records 300000] [--runs direct,p1,p2]``
(needs Java 17 and Maven for Flink; the jars are fetched once into ``.jars/``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.e2e_bench import SCHEMA_TABLES, make_record, produce  # pylint: disable=wrong-import-position
from bench.sink_bench import PASSWORD, emulator  # pylint: disable=wrong-import-position
from devtools.local_kafka import KafkaCluster  # pylint: disable=wrong-import-position
from devtools.worker_pool import WorkerPool  # pylint: disable=wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CLOCK_TICKS = os.sysconf('SC_CLK_TCK')
# The steady state: between the loads that bring the rows loaded past these shares.
STEADY_FROM = 0.1
STEADY_TO = 0.9


def _children() -> Dict[int, List[int]]:
  tree: Dict[int, List[int]] = {}
  for name in os.listdir('/proc'):
    if not name.isdigit():
      continue
    try:
      with open(f'/proc/{name}/stat', encoding='ascii', errors='replace') as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    except OSError:
      continue
    tree.setdefault(int(fields[1]), []).append(int(name))
  return tree


def _cpu_of(pid: int) -> Optional[float]:
  try:
    with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as handle:
      fields = handle.read().rsplit(')', 1)[1].split()
  except OSError:
    return None
  return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def tree_pids(roots: List[int]) -> List[int]:
  """The live processes under ``roots``, roots included."""
  tree = _children()
  found, stack = [], list(roots)
  while stack:
    pid = stack.pop()
    if pid not in found:
      found.append(pid)
      stack.extend(tree.get(pid, []))
  return found


def cpu_of(pids: List[int]) -> Dict[int, float]:
  """CPU seconds (user + system) of each of ``pids`` still alive."""
  cpu = {}
  for pid in pids:
    secs = _cpu_of(pid)
    if secs is not None:
      cpu[pid] = secs
  return cpu


def machine_busy() -> Tuple[float, float]:
  """``(busy, all)`` CPU seconds of the whole machine so far (``/proc/stat``)."""
  with open('/proc/stat', encoding='ascii') as handle:
    fields = [int(v) for v in handle.readline().split()[1:]]
  idle = fields[3] + fields[4]
  return (sum(fields) - idle) / _CLOCK_TICKS, sum(fields) / _CLOCK_TICKS


def _others() -> List[int]:
  """What serves both runners alike: the Kafka cluster (in this process) and the Stream Load
  server (a child of this process); reported, not counted."""
  pids = [os.getpid()]
  for pid in _children().get(os.getpid(), []):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as handle:
        if b'stream_load_emulator' in handle.read():
          pids.append(pid)
    except OSError:
      continue
  return pids


def _command(pid: int) -> str:
  if pid == os.getpid():
    return '(kafka, not counted)'
  try:
    with open(f'/proc/{pid}/cmdline', 'rb') as handle:
      words = handle.read().split(b'\0')
  except OSError:
    return '?'
  if words and words[0].endswith(b'java'):
    return 'jvm'
  text = b' '.join(words).decode(errors='replace')
  if 'SdkHarness' in text:
    return 'sdk worker'
  if 'worker_pool_main' in text:
    return 'worker pool'
  if 'kafka_to_doris' in text:
    return 'launcher'
  if 'stream_load_emulator' in text:
    return '(server, not counted)'
  return text[:40]


class _LoadLog:
  """The server's successful loads into ``bench`` tables, fetched as they come."""

  def __init__(self, fe_url: str):
    self._url = f'{fe_url}/_emulator/loads'
    self._seen = 0
    self.rows = 0
    self.loads = 0

  def poll(self) -> int:
    """Fetches the new loads; returns the rows loaded so far."""
    with urllib.request.urlopen(f'{self._url}?since={self._seen}', timeout=10) as response:
      entries = json.loads(response.read())
    self._seen += len(entries)
    for entry in entries:
      if entry.get('status') == 'Success' and entry.get('db') == 'bench':
        self.rows += entry['loaded_rows']
        self.loads += 1
    return self.rows


class Run:
  """One loader run: its start-up and steady-state figures."""

  def __init__(self, name: str, rows: int, startup_secs: float, steady_secs: float,
               steady_rows: int, steady_cpu: float, total_secs: float, total_cpu: float):
    self.name = name
    self.rows = rows
    self.startup_secs = startup_secs
    self.steady_secs = steady_secs
    self.steady_rows = steady_rows
    self.steady_cpu = steady_cpu
    self.total_secs = total_secs
    self.total_cpu = total_cpu

  @property
  def rate(self) -> float:
    return self.steady_rows / max(self.steady_secs, 1e-9)

  @property
  def cpu_per_100k(self) -> float:
    return self.steady_cpu / max(self.steady_rows, 1) * 100_000

  def line(self) -> str:
    return (f'{self.name}: start-up {self.startup_secs:.1f} s, steady {self.rate:,.0f} rows/s '
            f'({self.steady_rows} rows in {self.steady_secs:.2f} s, '
            f'{self.cpu_per_100k:.2f} CPU s per 100k rows); whole run {self.total_secs:.1f} s, '
            f'{self.total_cpu:.1f} CPU s')


def run_loader(name: str, kafka: KafkaCluster, fe_url: str, records: int, runner_flags: List[str],
               extra_roots: Tuple[int, ...] = ()) -> Run:
  topics = produce(kafka, records, f'{name.replace(" ", "-")}-{os.getpid()}', make_record)
  group = f'runner-bench-{name.replace(" ", "-")}-{time.time_ns()}'
  argv = [sys.executable, '-m', 'pipelines.kafka_to_doris',
          f'--bootstrap_servers={kafka.bootstrap_servers}', f'--topics={",".join(topics)}',
          f'--group_id={group}', '--stop_at_end', f'--fe_nodes={fe_url}', '--user=root',
          f'--password={PASSWORD}',
          '--topic_table_map=' + ','.join(f'{k}={v}' for k, v in topics.items()),
          f'--dead_letter_path={tempfile.gettempdir()}/runner-bench-dead-letters',
          '--progress_interval_secs=0', *runner_flags]
  log_of_loads = _LoadLog(fe_url)
  log_of_loads.poll()
  before = log_of_loads.rows
  started = time.monotonic()
  with tempfile.TemporaryFile() as log:
    process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    roots = [process.pid, *extra_roots]
    others = _others()
    base = cpu_of(tree_pids(list(extra_roots)))
    samples: List[Tuple[float, Dict[int, float], int]] = []
    seen: Dict[int, float] = {}
    roles: Dict[int, str] = {}
    pids: List[int] = []
    next_scan = 0.0
    while process.poll() is None:
      now = time.monotonic()
      if now >= next_scan:  # new processes (the JVM, the workers) appear during start-up
        pids = tree_pids(roots) + others
        next_scan = now + 1.0
        for pid in pids:
          roles.setdefault(pid, _command(pid))
      cpu = cpu_of(pids)
      cpu[-1], cpu[-2] = machine_busy()
      seen.update(cpu)
      rows = log_of_loads.poll() - before
      if rows and (not samples or rows > samples[-1][2]):
        samples.append((now, cpu, rows))
      time.sleep(0.1)
    total_secs = time.monotonic() - started
    if process.returncode != 0:
      log.seek(0)
      raise RuntimeError(f'{name}: exit {process.returncode}: {log.read()[-3000:].decode()}')
  rows = log_of_loads.poll() - before
  if rows != records:
    raise RuntimeError(f'{name}: {rows} rows loaded of {records}')
  # The steady state: from the first sample past STEADY_FROM of the rows to the last one before
  # STEADY_TO (the start-up and the end-of-input flush left out).
  window = [sample for sample in samples
            if STEADY_FROM * records <= sample[2] <= STEADY_TO * records]
  if len(window) < 2:
    raise RuntimeError(f'{name}: too few loads to measure a steady state; give more --records')
  first, last = window[0], window[-1]
  by_role: Dict[str, float] = {}
  busy = last[1].pop(-1) - first[1].pop(-1)
  machine = last[1].pop(-2) - first[1].pop(-2)
  print(f'  {name}: the machine was busy {busy / machine:.0%} of its CPU time in the steady state',
        flush=True)
  for pid, secs in last[1].items():
    role = roles.get(pid, '?')
    by_role[role] = by_role.get(role, 0.0) + secs - first[1].get(pid, 0.0)
  workers = sorted(round(secs - first[1].get(pid, 0.0), 2) for pid, secs in last[1].items()
                   if roles.get(pid) == 'sdk worker')
  if len(workers) > 1:
    print(f'  {name}: {len(workers)} SDK worker processes, CPU s each: {workers}', flush=True)
  print(f'  {name} steady-state CPU s by process: ' +
        ', '.join(f'{role} {secs:.2f}' for role, secs in sorted(by_role.items())), flush=True)
  counted = {pid for pid, role in roles.items() if not role.startswith('(')}
  total_cpu = sum(secs - base.get(pid, 0.0) for pid, secs in seen.items()
                  if pid in counted and pid >= 0)
  return Run(name, rows, samples[0][0] - started, last[0] - first[0], last[2] - first[2],
             sum(secs for role, secs in by_role.items() if not role.startswith('(')),
             total_secs, total_cpu)


def flink_flags(parallelism: int, pool: str) -> List[str]:
  from devtools.flink import job_server_jar  # pylint: disable=import-outside-toplevel
  return ['--runner=FlinkRunner', '--flink_master=[local]',
          f'--flink_job_server_jar={job_server_jar()}', f'--parallelism={parallelism}',
          '--environment_type=EXTERNAL', f'--environment_config={pool}']


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--records', type=int, default=300_000)
  parser.add_argument('--batch_rows', type=int, default=None,
                      help='the loader\'s --batch_rows (default: its own)')
  parser.add_argument('--runs', default='direct,p1,p2',
                      help='which runs, comma-separated: direct, p1, p2')
  args = parser.parse_args()
  wanted = [name.strip() for name in args.runs.split(',') if name.strip()]
  batch_flags = [f'--batch_rows={args.batch_rows}'] if args.batch_rows else []
  import bench.sink_bench as sink_bench  # pylint: disable=import-outside-toplevel
  sink_bench.SCHEMA = 'CREATE DATABASE bench;\n' + SCHEMA_TABLES
  kafka = KafkaCluster(compression='lz4')
  results: Dict[str, Run] = {}
  try:
    with emulator() as fe_url:
      if 'direct' in wanted:
        results['direct'] = run_loader('direct', kafka, fe_url, args.records,
                                       ['--runner=DirectRunner', *batch_flags])
        print(results['direct'].line(), flush=True)
      for parallelism in (1, 2):
        key = f'p{parallelism}'
        if key not in wanted:
          continue
        with WorkerPool() as pool:
          results[key] = run_loader(f'flink {key}', kafka, fe_url, args.records,
                                    flink_flags(parallelism, pool.address) + batch_flags,
                                    extra_roots=(pool.pid,))
        print(results[key].line(), flush=True)
  finally:
    kafka.close()
  direct, p1, p2 = results.get('direct'), results.get('p1'), results.get('p2')
  if direct and p1 and not p2:
    print(f'runners: flink p1 {p1.rate:,.0f} rows/s ({p1.rate / direct.rate:.2f}x direct), '
          f'cpu/row flink {p1.cpu_per_100k / direct.cpu_per_100k:.2f}x direct')
  if direct and p1 and p2:
    print(f'runners: flink p1 {p1.rate:,.0f} rows/s ({p1.rate / direct.rate:.2f}x direct), '
          f'flink p2 {p2.rate:,.0f} rows/s ({p2.rate / p1.rate:.2f}x p1), cpu/row flink '
          f'{p1.cpu_per_100k / direct.cpu_per_100k:.2f}x direct')


if __name__ == '__main__':
  main()
