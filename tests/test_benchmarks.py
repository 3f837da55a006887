"""Every benchmark runs, at a tiny size, and prints its last line (so none of them rots).

The figures mean nothing at this size and nothing is asserted about them; what fails here is a
benchmark that no longer starts, crashes or stops printing what its docstring promises.
"""

import os
import re
import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT

_NUMBER = r'[0-9][0-9,.]*'
SMOKE_RUNS = {
    'e2e_bench.py': (['--records', '4000'], rf'^e2e: {_NUMBER} rows/s, {_NUMBER}x vs plain loop'),
    'sink_bench.py': (['--batches', '3', '--batch_rows', '500'],
                      rf'^sink: {_NUMBER} MB/s, {_NUMBER}x vs naive'),
    'formats_bench.py': (['--batches', '2', '--rows', '200'],
                         rf'^formats: json {_NUMBER} us/row {_NUMBER} B/row, csv .* \(kafka rows\)'),
    'emulator_bench.py': (['--mb', '4'], rf'^emulator count-only: {_NUMBER} MB/s'),
    'source_bench.py': (['--records', '4000', '--record_bytes', '256', '--topics', '1'],
                        rf'^source: {_NUMBER} rec/s, {_NUMBER}x vs plain loop'),
    'many_tables_bench.py': (['--records', '3000', '--tables', '30', '--pairs', '1'],
                             rf'^many_tables: 30 tables at {_NUMBER}-{_NUMBER}-{_NUMBER}x the '
                             rf'rows/s of 4 \(min-median-max of 1 pairs\), CPU {_NUMBER}/{_NUMBER} s'),
    'continuous_bench.py': (['--rate', '300', '--secs', '4', '--backlog_mb', '4'],
                            rf'^continuous: {_NUMBER} loads \(ideal {_NUMBER}\), median '),
    # The soak's 2-minute version: every fault of its schedule, rows exact, fds and threads flat.
    'soak.py': (['--minutes', '2', '--rate', '300', '--outage_secs', '10', '--sample_secs', '5',
                 '--batch_rows', '500'],
                r'^soak: 2 min, \d+ rows exact, RSS \d+/\d+ MB \(slope -?[\d.]+ MB/h\), '
                r'fds \d+/\d+, threads \d+/\d+$'),
}
# Lines a smoke run prints besides its last: the soak ran every fault of its schedule.
_ALSO_PRINTED = {
    'soak.py': [r'^faults: SIGKILL and restart; 5 x 503; 2 responses lost after commit; cluster '
                r'down 10 s; 2 resets mid-body; Kafka broker 1 restarted \(down 10 s\); caught '
                r'up: True; drain exit code: 0$'],
}


def _run(script, args, timeout_secs=300):
  return subprocess.run([sys.executable, os.path.join('bench', script), *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout_secs)


def _printed(result) -> str:
  """What a failed run printed, as text (a tuple's repr is cut short in the report)."""
  return (f'exit code {result.returncode}\n--- stdout:\n{result.stdout[-3000:]}\n'
          f'--- stderr:\n{result.stderr[-3000:]}')


@pytest.mark.unit
def test_every_benchmark_has_a_smoke_run():
  scripts = {name for name in os.listdir(os.path.join(REPO_ROOT, 'bench'))
             if name.endswith('.py') and name != '__init__.py'}
  assert scripts == set(SMOKE_RUNS) | {'runner_bench.py'}


@pytest.mark.e2e
@pytest.mark.parametrize('script', sorted(SMOKE_RUNS))
def test_a_benchmark_runs_at_a_tiny_size_and_prints_its_last_line(script):
  args, last_line = SMOKE_RUNS[script]
  result = _run(script, args)
  assert result.returncode == 0, _printed(result)
  lines = [line for line in result.stdout.splitlines() if line.strip()]
  assert lines and re.match(last_line, lines[-1]), _printed(result)
  for line in _ALSO_PRINTED.get(script, ()):
    assert any(re.match(line, printed) for printed in lines), _printed(result)


@pytest.mark.integration
def test_the_runner_benchmark_runs_on_the_local_runner_and_flink(flink_job_server_jar):
  """Direct and Flink p1 at a tiny size (p2 doubles the time and tests nothing more here)."""
  del flink_job_server_jar  # the jars are fetched (or the test skips, or fails in CI)
  result = _run('runner_bench.py', ['--records', '20000', '--batch_rows', '500',
                                    '--runs', 'direct,p1'], timeout_secs=600)
  assert result.returncode == 0, _printed(result)
  lines = [line for line in result.stdout.splitlines() if line.strip()]
  assert re.match(rf'^runners: flink p1 {_NUMBER} rows/s \({_NUMBER}x direct\), cpu/row flink '
                  rf'{_NUMBER}x direct$', lines[-1]), _printed(result)


@pytest.mark.unit
def test_the_soak_judges_librdkafka_threads_by_kind():
  """A broker restart moves a client's broker threads; more clients, a second thread of one
  broker per client, or more of the job's own threads is growth."""
  from collections import Counter  # pylint: disable=import-outside-toplevel
  from bench.soak import threads_grew  # pylint: disable=import-outside-toplevel
  early = [Counter({'python': 12, 'rdk:main': 2, 'rdk:broker1': 1, 'rdk:broker2': 2,
                    'rdk:broker-1': 8})]
  assert threads_grew(early, Counter({'python': 12, 'rdk:main': 2, 'rdk:broker1': 2,
                                      'rdk:broker-1': 8,
                                      'rdk:broker2': 2})) == ''
  assert 'Kafka clients 3' in threads_grew(early, Counter({'python': 12, 'rdk:main': 3}))
  assert 'other than' in threads_grew(early, Counter({'python': 13, 'rdk:main': 2}))
  assert '3 rdk:broker1' in threads_grew(early, Counter({'python': 12, 'rdk:main': 2,
                                                         'rdk:broker1': 3}))
