"""The command line: ``python -m pipelines.kafka_to_doris --help``.

Parses the flags into one ``PipelineConfig``, runs the start-up checks and
the journal's recovery, builds the graph (``pipelines.assembly``) and runs it
on the requested runner with the settings it needs (``pipelines.runners``);
prints a summary; exit codes: 0 done (or drained), 1 the pipeline failed,
2 bad flags or an unusable cluster at start, 128 + signal number on a second
stop signal.

The first SIGTERM or SIGINT drains the job on every runner: the reads stop,
every pending batch is flushed (reason ``drain``), the loads are waited for,
dead letters written, offsets committed, the job ends, the summary is
printed, exit 0.  Workers in this process (the local runner, LOOPBACK) are
told directly; workers elsewhere (Flink's or Prism's SDK worker processes)
through a drain request on the job's Kafka, which ``--drain`` also sends for
a job whose launcher is gone.  A second signal exits at once (and cancels a
portable job); offsets are committed only for loaded rows, so nothing is
lost.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.assembly import (TABLE_BYTES_LOADED, TABLE_LOADS, TABLE_ROWS_LOADED,
                                build_pipeline, run_context, start_up)
from pipelines.config import ConfigurationError, PipelineConfig, consumer_config_of
from pipelines.flag_check import check_flags
from pipelines.options import KafkaToDorisOptions, add_flags
from pipelines.preflight import PreflightError
from pipelines.local_runner_metrics import bound_runner_metrics
from pipelines.process_tuning import PeriodicTrim, tune_process
from pipelines.plan import PLAN_FLAG, plan_lines
from pipelines.replay import REPLAY_FLAG, replay_dead_letters
from pipelines.runners import (discovery_shards, make_pipeline, prepare_argv, runs_locally,
                               workers_run_here)
from transforms import metrics
from transforms.delivery.skip import SHARED_NAME as LOADED_RANGES
from transforms.errors import LoaderError
from transforms.runtime import RunContext, acquire, release
from transforms.stream_load import StreamLoadError

__all__ = ['run', 'run_pipeline', 'make_pipeline', 'RunSummary', 'root_cause_message',
           'request_drain']

_LOGGER = logging.getLogger(__name__)


def peak_rss_mb() -> float:
  """This process's peak resident memory (its own: VmHWM, not inherited through fork)."""
  try:
    with open('/proc/self/status', encoding='ascii') as status:
      for line in status:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  import resource  # pylint: disable=import-outside-toplevel
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RunSummary:
  """What a finished run did: Beam counters, wall time and peak memory."""

  def __init__(self, totals: Dict[str, int], per_table: Dict[str, Dict[str, int]],
               elapsed_secs: float, drained: bool = False, peak_rss: float = 0.0):
    self.totals = totals
    self.per_table = per_table
    self.elapsed_secs = elapsed_secs
    self.drained = drained
    self.peak_rss_mb = peak_rss

  @classmethod
  def of(cls, result, elapsed_secs: float, drained: bool = False) -> 'RunSummary':
    totals: Dict[str, int] = {}
    per_table: Dict[str, Dict[str, int]] = {}
    try:
      counters = result.metrics().query(MetricsFilter())['counters']
    except Exception:  # pylint: disable=broad-except  (a runner without metrics: no summary)
      counters = []
    for counter in counters:
      key = counter.key.metric
      value = counter.committed or counter.attempted or 0
      if key.namespace in (TABLE_ROWS_LOADED, TABLE_LOADS, TABLE_BYTES_LOADED):
        table = per_table.setdefault(key.name, {})
        table[key.namespace] = table.get(key.namespace, 0) + value
      elif key.namespace == metrics.NAMESPACE:
        totals[key.name] = totals.get(key.name, 0) + value
    return cls(totals, per_table, elapsed_secs, drained, peak_rss_mb())

  def tables(self) -> List[str]:
    return sorted(self.per_table)

  def rows_loaded(self, table: str) -> int:
    return self.per_table.get(table, {}).get(TABLE_ROWS_LOADED, 0)

  def loads(self, table: str) -> int:
    return self.per_table.get(table, {}).get(TABLE_LOADS, 0)

  def bytes_loaded(self, table: str) -> int:
    return self.per_table.get(table, {}).get(TABLE_BYTES_LOADED, 0)

  def lines(self) -> List[str]:
    t = self.totals
    how = 'drained: ' if self.drained else ''
    out = [f'summary: {how}{t.get("rows_loaded", 0)} rows loaded in {t.get("batches_loaded", 0)} '
           f'loads, {t.get("rows_filtered", 0)} filtered, {t.get("dead_letters_written", 0)} dead '
           f'letters, {t.get("rows_already_loaded", 0)} rows skipped as already loaded, '
           f'{t.get("bytes_loaded", 0) / 1e6:.1f} MB in {self.elapsed_secs:.1f} s, peak RSS '
           f'{self.peak_rss_mb:.0f} MB']
    for table in self.tables():
      out.append(f'  {table}: {self.rows_loaded(table)} rows in {self.loads(table)} loads')
    return out


def root_cause_message(error: BaseException) -> str:
  """The innermost cause of a runner's wrapped exception, as one line.

  Beam wraps a DoFn's exception (with its traceback as text) in its own; the
  user needs the original message, not the runner's stack.
  """
  while True:
    inner = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if inner is None:
      break
    error = inner
  text = str(error).strip()
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  for line in reversed(lines):
    if 'Error' in line.split(':', 1)[0] or 'Exception' in line.split(':', 1)[0]:
      return line.split(' [while running', 1)[0]
  return (lines[-1] if lines else type(error).__name__).split(' [while running', 1)[0]


# After every read reported its end, a portable job gets this long to end by itself before the
# launcher cancels it (Flink keeps a streaming job's source alive; see pipelines.runners).
_END_GRACE_SECS = 5.0


class _StopSignals:
  """SIGTERM/SIGINT: the first drains the run, the second exits at once.

  Workers in this process are told directly; others through a drain request
  on Kafka.  On a portable runner the launcher then waits until every read of
  the run reported its end (its rows loaded, its offset committed) and ends a
  job that stays open (``drained``, ``cancelled_after_drain``).
  """

  def __init__(self, context: RunContext, runtime, remote_workers: bool, reads=None,
               drain_timeout_secs: float = 600.0):
    self._context = context
    self._runtime = runtime
    self._remote = remote_workers
    self._reads = list(reads or ())
    self._drain_timeout_secs = drain_timeout_secs
    self._count = 0
    self._previous = {}
    self._finished = threading.Event()
    self.result = None
    self.cancelled_after_drain = False

  @property
  def draining(self) -> bool:
    return self._count > 0

  def __enter__(self):
    for signum in (signal.SIGTERM, signal.SIGINT):
      self._previous[signum] = signal.signal(signum, self._handle)
    if self._remote and self._context.stop_channel is not None:
      # A drain asked from elsewhere (--drain): end the job as after a signal.
      self._unwatch = self._context.stop_channel.watch(self._requested_elsewhere,
                                                       self._context.started_ms)
    return self

  def __exit__(self, *exc):
    self._finished.set()
    if getattr(self, '_unwatch', None) is not None:
      self._unwatch()
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _requested_elsewhere(self, reason: str) -> None:
    if self._count == 0:
      self._count = 1
      metrics.DRAINING.set(1)
      _LOGGER.warning('draining (%s)', reason)
      threading.Thread(target=self._drain_remote, args=(None,), name='drain', daemon=True).start()

  def _handle(self, signum, _frame):
    self._count += 1
    name = signal.Signals(signum).name
    if self._count == 1:
      metrics.DRAINING.set(1)
      self._count = 1
      _LOGGER.warning('%s: draining -- stopping the reads, flushing every pending batch, waiting '
                      'for the loads, committing offsets; send it again to exit at once', name)
      if self._runtime is not None:
        self._runtime.request_stop(name)
      if self._remote and self._context.stop_channel is not None:
        threading.Thread(target=self._drain_remote, args=(name,), name='drain', daemon=True).start()
      return
    print(f'{name} again: exiting now; offsets are committed only for loaded rows, a restart '
          'resumes there', file=sys.stderr, flush=True)
    if self.result is not None and self._remote:
      try:
        self.result.cancel()
      except Exception:  # pylint: disable=broad-except
        pass
    os._exit(128 + signum)  # pylint: disable=protected-access

  def _drain_remote(self, name: Optional[str]) -> None:
    """Asks the workers to drain (unless asked from elsewhere); once every read reported its
    end, ends a job left open."""
    channel = self._context.stop_channel
    asked_ms = int(time.time() * 1000) - 60_000 if name is None else int(time.time() * 1000)
    if name is not None:
      try:
        channel.request(f'{name} to the launcher')
      except Exception as error:  # pylint: disable=broad-except
        _LOGGER.error('the drain request did not reach the workers: %s', error)
        return
    missing = channel.await_done(self._context.run_id, self._reads, asked_ms - 1000,
                                 self._drain_timeout_secs, stopping=self._finished)
    if self._finished.is_set():
      return  # the job ended by itself
    if missing:
      _LOGGER.error('%d reads did not report their end within %.0f s (%s); ending the job: '
                    'their offsets hold only loaded rows, a restart reads the rest',
                    len(missing), self._drain_timeout_secs, sorted(missing)[:5])
    else:
      _LOGGER.info('every read of the job ended, its rows loaded and committed')
    if self._finished.wait(_END_GRACE_SECS) or self.result is None:
      return
    try:
      self.result.metrics()  # kept for the summary: the job service goes with the job
    except Exception:  # pylint: disable=broad-except
      _LOGGER.debug('no metrics before ending the job', exc_info=True)
    self.cancelled_after_drain = True
    _LOGGER.info('ending the drained job (its runner keeps a streaming job open)')
    self.result.cancel()


def run_pipeline(argv: Sequence[str]) -> RunSummary:
  """Builds and runs the pipeline from flags; returns its summary.

  Raises:
    ConfigurationError, PreflightError: before anything runs.
  """
  check_flags(argv)
  argv = prepare_argv(argv)
  options = PipelineOptions(list(argv))
  config = PipelineConfig.from_options(options)
  p = make_pipeline(options)
  loaded = start_up(config)
  context = run_context(config)
  # Where the workers run in this process, this is their runtime: it learns of a stop directly,
  # and it is handed what recovery found.
  runtime = acquire(context) if workers_run_here(options) else None
  trimming = None
  try:
    if runtime is not None:
      runtime.seed(LOADED_RANGES, loaded)
    outputs = build_pipeline(p, config, context=context,
                             discovery_shards=discovery_shards(options))
    started = time.monotonic()
    if runs_locally(options):
      if tune_process()['allocator']:
        trimming = PeriodicTrim().start()
      bound_runner_metrics()
    with _StopSignals(context, runtime, remote_workers=not runs_locally(options),
                      reads=outputs.reads,
                      drain_timeout_secs=config.load.load_timeout_secs + 60.0) as signals:
      result = signals.result = p.run()
      try:
        result.wait_until_finish()
      except Exception:  # pylint: disable=broad-except
        if not signals.cancelled_after_drain:
          raise
    return RunSummary.of(result, time.monotonic() - started, signals.draining)
  finally:
    if trimming is not None:
      trimming.stop()
    if runtime is not None:
      release(runtime)


def request_drain(argv: Sequence[str]) -> str:
  """``--drain``: asks the workers of the job with this ``--group_id`` to drain.

  Returns:
    What was done, as a line for the user.

  Raises:
    ConfigurationError: the Kafka flags are missing or wrong.
  """
  from transforms.kafka import KafkaStopChannel  # pylint: disable=import-outside-toplevel
  check_flags([a for a in argv if a != '--drain'])
  opts = PipelineOptions([a for a in argv if a != '--drain']).view_as(KafkaToDorisOptions)
  if not opts.bootstrap_servers or not opts.group_id:
    raise ConfigurationError('--drain needs --bootstrap_servers and --group_id (and '
                             '--journal_topic if the job has its own)')
  channel = KafkaStopChannel(consumer_config_of(opts), opts.journal_topic)
  try:
    channel.request('--drain')
  except RuntimeError as error:
    raise ConfigurationError(str(error)) from None
  return (f'drain requested for group {opts.group_id} (topic {opts.journal_topic}): its workers '
          'stop reading, load what is pending, commit and finish')


def plan(argv: Sequence[str]) -> List[str]:
  """``--plan``: the job's flags; what it would do, as lines (nothing runs)."""
  argv = [a for a in argv if a != PLAN_FLAG]
  check_flags(argv)
  return plan_lines(PipelineConfig.from_options(PipelineOptions(argv)))


def replay(argv: Sequence[str]) -> int:
  """``--replay_dead_letters``: the job's flags, its dead letters loaded again; an exit code."""
  argv = [a for a in argv if a != REPLAY_FLAG]
  check_flags(argv)
  config = PipelineConfig.from_options(PipelineOptions(argv), require_topics=False)
  summary = replay_dead_letters(config)
  for line in summary.lines():
    print(line)
  return 0 if summary.complete else 1


def _no_traceback_for_known_errors(record: logging.LogRecord) -> bool:
  """Beam logs a failed step with its traceback; for an error of the loader's taxonomy the
  message says it all (and the command ends with it as its ``error:`` line)."""
  if record.exc_info and isinstance(record.exc_info[1], LoaderError):
    record.exc_info, record.exc_text = None, None
  return True


def help_text() -> str:
  """``--help``: every flag of the pipeline with its help and default."""
  parser = argparse.ArgumentParser(
      prog='python -m pipelines.kafka_to_doris',
      usage='%(prog)s --bootstrap_servers=... --topics=... --group_id=... --fe_nodes=... '
            '--table=... [flags]   (or --drain --bootstrap_servers=... --group_id=...; or the job\'s '
            'flags and --replay_dead_letters, or --plan)',
      description='Load Kafka topics into Apache Doris / StarRocks tables with Stream Load.',
      epilog='Any Apache Beam pipeline option is accepted as well (--runner, --streaming, '
      '--setup_file, FlinkRunner and DataflowRunner options, ...); --runner defaults to the '
      'DirectRunner, which runs here on the FnApiRunner. Per-table settings: --table_config '
      '(see README). The password can come from --password_file or the STREAM_LOAD_PASSWORD '
      'environment variable instead of --password. SIGTERM/SIGINT drain the job on every '
      'runner (a second one exits at once); --drain with --bootstrap_servers and --group_id '
      'drains a running job from elsewhere; the job\'s flags with --replay_dead_letters load its '
      'dead letters again once their cause is fixed (docs/operations.md); with --plan they print '
      'which table each topic reaches and the DDL --ddl_topic would run, and run nothing.')
  add_flags(parser, grouped=True)
  return parser.format_help()


def run(argv: Optional[Sequence[str]] = None) -> int:
  """The command line: parses ``argv``, runs, prints a summary; returns an exit code."""
  argv = list(argv) if argv is not None else sys.argv[1:]
  if '--help' in argv or '-h' in argv:
    print(help_text())
    return 0
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                      force=True)
  logging.getLogger('apache_beam.runners.common').addFilter(_no_traceback_for_known_errors)
  if '--drain' in argv:
    try:
      print(request_drain(argv))
    except ConfigurationError as error:
      print(f'error: {error}', file=sys.stderr)
      return 2
    return 0
  if PLAN_FLAG in argv:
    try:
      print('\n'.join(plan(argv)))
    except ConfigurationError as error:
      print(f'error: {error}', file=sys.stderr)
      return 2
    return 0
  if REPLAY_FLAG in argv:
    try:
      return replay(argv)
    except ConfigurationError as error:
      print(f'error: {error}', file=sys.stderr)
      return 2
    except LoaderError as error:
      print(f'error: the replay stopped, nothing after this was marked replayed: {error}',
            file=sys.stderr)
      return 1
  try:
    summary = run_pipeline(argv)
  except (ConfigurationError, PreflightError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  except StreamLoadError as error:
    print(f'error: at start: {error}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print('interrupted: offsets are committed only for loaded rows; a restart resumes there',
          file=sys.stderr)
    return 130
  except Exception as error:  # pylint: disable=broad-except
    _LOGGER.debug('pipeline failed', exc_info=True)
    print(f'error: the pipeline failed: {root_cause_message(error)}', file=sys.stderr)
    return 1
  for line in summary.lines():
    print(line)
  return 0


if __name__ == '__main__':
  sys.exit(run())
