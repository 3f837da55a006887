"""Replaying dead letters once their cause is fixed: each row and record loads, once.

The first run routes events by a ``table`` field: some name a table that does not exist yet
(the load stage refuses them), and a topic of plain JSON is read with the wrong
``--cdc_format=debezium`` (the parse stage refuses it). Once the table exists,
``--replay_dead_letters`` with the job's flags loads the refused rows straight into their table
and produces the refused records back to their topic; the job, run again with the corrected flag,
loads those. Replaying again -- or the same file again, as after a crash before it was marked --
loads nothing twice.
"""

import collections
import glob
import logging
import os
import shutil

import orjson

from pipelines.kafka_to_doris import run
from tests.fixtures.stream_load import DEMO_SCHEMA
from tests.harness import pipeline_argv, read_dead_letters, run_in_process
from tests.pipelines.helpers import assert_events_exactly_once, event
import pytest

pytestmark = pytest.mark.reliability


@pytest.fixture(autouse=True)
def _root_logging_restored():
  """``run`` configures the root logger (to this test's captured stderr, closed after it)."""
  root = logging.getLogger()
  handlers, level = list(root.handlers), root.level
  yield
  root.handlers[:] = handlers
  root.setLevel(level)

LATE_TABLE = 'demo.events_late'


def _late_table_ddl():
  """demo.events's DDL (the demo schema), for a table named ``LATE_TABLE``."""
  with open(DEMO_SCHEMA) as handle:
    schema = handle.read()
  start = schema.index('CREATE TABLE IF NOT EXISTS demo.events (')
  ddl = schema[start:schema.index(';', start)]
  return ddl.replace('demo.events (', f'{LATE_TABLE} (', 1)


def test_dead_letters_replay_once_their_cause_is_fixed(kafka_cluster, stream_load_server,
                                                       tmp_path, capsys):
  routed = kafka_cluster.unique_topic('routed')
  plain = kafka_cluster.unique_topic('plain')
  routed_values = [orjson.dumps(dict(event(i), table=LATE_TABLE if i % 3 == 0 else 'demo.events'))
                   for i in range(300)]
  kafka_cluster.produce(routed, routed_values)
  kafka_cluster.produce(plain, [orjson.dumps(dict(event(i), table='demo.events'))
                                for i in range(1000, 1200)])
  group = f'g-{routed}'
  dead_dir = str(tmp_path / 'dead')
  base = pipeline_argv(kafka_cluster, stream_load_server, [routed], group, dead_dir,
                       table_field='table', batch_rows=50, max_dead_letter_ratio=1)
  run_in_process(base)
  # The plain topic read as Debezium: every record refused at parsing.
  wrong = pipeline_argv(kafka_cluster, stream_load_server, [plain], f'g-{plain}', dead_dir,
                        table_field='table', cdc_format='debezium', max_dead_letter_ratio=1)
  run_in_process(wrong)
  letters = read_dead_letters(dead_dir)
  assert collections.Counter((letter['stage'], letter['reason'].split(':')[0])
                             for letter in letters) == {('load', 'table_not_found'): 100,
                                                        ('parse', 'bad_envelope'): 200}
  assert stream_load_server.query('SELECT count(*) FROM demo.events') == [(200,)]

  # The cause is fixed: the table exists; the replay runs with the job's own flags.
  stream_load_server.sql(_late_table_ddl(), db='demo')
  assert run(base + ['--replay_dead_letters']) == 0
  out = capsys.readouterr().out
  assert '100 row(s) loaded' in out and '200 record(s) produced again' in out, out
  assert stream_load_server.query(f'SELECT count(*), count(DISTINCT event_id) FROM {LATE_TABLE}'
                                  ) == [(100, 100)]
  # The re-produced records are read by the job with the corrected flags (no --cdc_format).
  fixed = pipeline_argv(kafka_cluster, stream_load_server, [plain], f'g-{plain}', dead_dir,
                        table_field='table')
  run_in_process(fixed)
  assert_events_exactly_once(stream_load_server,
                             [i for i in range(300) if i % 3] + list(range(1000, 1200)))

  # Nothing is left to replay; a file replayed again (a crash before it was marked) loads its
  # rows under the same labels: found loaded, not loaded twice.
  done = sorted(glob.glob(os.path.join(dead_dir, 'dead-letters-*.jsonl.replayed')))
  assert len(done) >= 2 and not glob.glob(os.path.join(dead_dir, 'dead-letters-*.jsonl'))
  for name in done:
    with open(name) as handle:
      if '"stage":"load"' in handle.read():
        shutil.copy(name, name[:-len('.replayed')])
  assert run(base + ['--replay_dead_letters']) == 0
  out = capsys.readouterr().out
  assert '0 row(s) loaded (100 found loaded by an earlier replay)' in out, out
  assert stream_load_server.query(f'SELECT count(*) FROM {LATE_TABLE}') == [(100,)]


def test_rows_that_fail_again_are_written_back_with_their_new_reason(
    kafka_cluster, stream_load_server, tmp_path, capsys):
  topic = kafka_cluster.unique_topic('still')
  kafka_cluster.produce(topic, [orjson.dumps(dict(event(i), table='demo.nowhere'))
                                for i in range(20)])
  dead_dir = str(tmp_path / 'dead')
  base = pipeline_argv(kafka_cluster, stream_load_server, [topic], f'g-{topic}', dead_dir,
                       table_field='table', max_dead_letter_ratio=1)
  run_in_process(base)
  assert run(base + ['--replay_dead_letters']) == 1  # the table still does not exist
  out = capsys.readouterr().out
  assert '20 failed again' in out, out
  again = glob.glob(os.path.join(dead_dir, 'dead-letters-replay-*.jsonl'))
  assert len(again) == 1
  letters = [orjson.loads(line) for line in open(again[0], 'rb')]
  assert len(letters) == 20
  assert all(letter['reason'].startswith('table_not_found: ') for letter in letters)
  assert len(glob.glob(os.path.join(dead_dir, 'dead-letters-*.jsonl.replayed'))) == 1


def test_replay_without_dead_letters_says_so(kafka_cluster, stream_load_server, tmp_path, capsys):
  base = pipeline_argv(kafka_cluster, stream_load_server, ['t'], 'g', str(tmp_path / 'none'),
                       table='demo.events')
  assert run(base + ['--replay_dead_letters']) == 2
  assert 'does not exist' in capsys.readouterr().err
