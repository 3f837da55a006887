"""WriteToStreamLoad in a pipeline: results, dead letters, idempotent retries, ordering."""

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from transforms.stream_load import SinkSettings, StreamLoadConfig, WriteToStreamLoad
from transforms.stream_load.errors import StreamLoadUnavailableError
from transforms.types import Row

pytestmark = pytest.mark.transform

PASSWORD = 'secret'
_OUT = {}


def _collect(name):
  def collect(item):
    _OUT.setdefault(name, []).append(item)
  collect.__name__ = f'collect_{name}'
  return collect


class _Collect(beam.DoFn):

  def __init__(self, name):
    self._name = name

  def process(self, item):
    _OUT.setdefault(self._name, []).append(item)


def _row(table, fields, offset, partition=0, topic='t'):
  return Row(table, fields, 'upsert', topic, partition, offset, 50)


def _sink(fe_nodes, password=PASSWORD, flush_workers=4, label_prefix='beam', **settings):
  config = dict(backoff_initial_secs=0.01, backoff_max_secs=0.05, max_retries=3)
  config.update(settings)
  return WriteToStreamLoad(
      StreamLoadConfig(fe_nodes=tuple(fe_nodes), user='root', password=password, **config),
      flush_workers=flush_workers, label_prefix=label_prefix)


def _write(server, batches, **kwargs):
  _OUT.clear()
  with beam.Pipeline(runner=FnApiRunner()) as p:
    result = p | beam.Create(batches, reshuffle=False) | _sink(server.fe_urls, **kwargs)
    _ = result.load_results | 'CollectResults' >> beam.ParDo(_Collect('results'))
    _ = result.dead_letters | 'CollectDeadLetters' >> beam.ParDo(_Collect('dead'))
  return _OUT.get('results', []), _OUT.get('dead', [])


def _count(server, table):
  return server.query(f'SELECT count(*) FROM {table}')[0][0]


def test_batches_load_and_report_one_result_each(stream_load_server):
  batches = [(('demo.users', 0), [_row('demo.users', {'id': i, 'name': f'n{i}'}, i)
                                  for i in range(b * 100, b * 100 + 100)]) for b in range(5)]
  results, dead = _write(stream_load_server, batches, flush_workers=3)
  assert len(results) == 5 and not dead
  assert sum(r.loaded_rows for r in results) == 500
  assert all(r.status == 'Success' for r in results)
  assert {tp for r in results for tp in r.source_offsets} == {('t', 0)}
  assert _count(stream_load_server, 'demo.users') == 500


def test_a_retried_bundle_loads_each_row_once(stream_load_server):
  batch = [(('demo.events', 0), [_row('demo.events', {'event_id': i, 'event_type': 'view'}, i)
                                 for i in range(300)])]
  first, _ = _write(stream_load_server, batch)
  again, _ = _write(stream_load_server, batch)  # the same batch, as a bundle retry sends it
  assert first[0].status == 'Success'
  assert again[0].status == 'Label Already Exists' and again[0].label == first[0].label
  assert _count(stream_load_server, 'demo.events') == 300


def test_bad_rows_are_isolated_and_dead_lettered(stream_load_server):
  rows = [_row('demo.users', {'id': i, 'name': f'n{i}'}, i) for i in range(64)]
  rows[37] = _row('demo.users', {'id': 'not-a-number', 'name': 'bad'}, 37)
  rows[50] = _row('demo.users', {'id': 50, 'name': object()}, 50)   # not JSON serialisable
  results, dead = _write(stream_load_server, [(('demo.users', 0), rows)])
  assert _count(stream_load_server, 'demo.users') == 62
  assert sorted(d.offset for d in dead if d.stage == 'load') == [37, 50]
  reasons = {d.offset: d.reason for d in dead}
  assert 'not JSON serialisable' in reasons[50]
  assert reasons[37].startswith('data_quality: ')
  assert sum(r.rows for r in results) == 62


def test_unknown_table_goes_to_dead_letters_with_the_reason(stream_load_server):
  rows = [_row('demo.nosuch', {'id': i}, i) for i in range(3)]
  results, dead = _write(stream_load_server, [(('demo.nosuch', 0), rows)])
  assert not results
  assert len(dead) == 3 and all(d.reason.startswith('table_not_found: ') for d in dead)


def test_wrong_password_fails_the_bundle_without_leaking_it(stream_load_server):
  rows = [_row('demo.users', {'id': 1}, 1)]
  _OUT.clear()
  with pytest.raises(StreamLoadUnavailableError) as info:
    with beam.Pipeline(runner=FnApiRunner()) as p:
      result = (p | beam.Create([(('demo.users', 0), rows)])
                | _sink(stream_load_server.fe_urls, password='hunter2-wrong', max_retries=1))
      _ = result.dead_letters | beam.ParDo(_Collect('dead'))
  assert 'authentication failed' in str(info.value)
  assert 'hunter2' not in str(info.value)
  assert not _OUT.get('dead'), 'good rows must not be dead-lettered for a cluster fault'


def test_a_cluster_down_past_every_retry_fails_instead_of_dead_lettering(make_stream_load_server):
  server = make_stream_load_server()
  server.inject_fault('be_down', node=0)
  rows = [_row('demo.events', {'event_id': i}, i) for i in range(5)]
  with pytest.raises(StreamLoadUnavailableError, match='gave up after 2 attempts'):
    _write(server, [(('demo.events', 0), rows)], max_retries=1)
  assert not _OUT.get('dead') and not _OUT.get('results')


def test_updates_to_one_key_land_in_order_with_parallel_flushes(stream_load_server):
  # The first batch is slow; without per-key ordering the second would land first.
  stream_load_server.inject_fault('slow', times=1, delay_secs=1.0)
  first = [_row('demo.users', {'id': 7, 'name': 'old'}, 1)]
  second = [_row('demo.users', {'id': 7, 'name': 'new'}, 2)]
  _write(stream_load_server, [(('demo.users', 0), first), (('demo.users', 0), second)],
         flush_workers=4)
  assert stream_load_server.query('SELECT name FROM demo.users WHERE id = 7') == [('new',)]


def test_configuration_is_validated_at_construction():
  with pytest.raises(ValueError, match='--flush_workers'):
    _sink(['http://fe:8030'], flush_workers=0)
  with pytest.raises(ValueError, match='--label_prefix'):
    _sink(['http://fe:8030'], label_prefix='bad prefix')
  with pytest.raises(ValueError, match='--fe_nodes'):
    _sink([])
  with pytest.raises(ValueError, match='StreamLoadConfig'):
    WriteToStreamLoad('http://fe:8030')


def test_settings_are_validated_once_where_they_are_made_and_passed_whole():
  config = StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', password='x')
  with pytest.raises(ValueError, match='--flush_workers'):
    SinkSettings(config, flush_workers=0)
  with pytest.raises(ValueError, match='may load twice'):
    SinkSettings(dataclasses.replace(config, group_commit='async_mode'),
                 write_ahead=object())  # exactly-once with group commit
  settings = SinkSettings(config, flush_workers=2, label_prefix='orders')
  assert WriteToStreamLoad(settings).config is config
  with pytest.raises(ValueError, match='not also'):
    WriteToStreamLoad(settings, flush_workers=3)


def test_rows_of_one_record_loaded_in_separate_batches_all_land(stream_load_server):
  # A JSON array or a Canal data list: several rows share one Kafka offset.
  first = [_row('demo.users', {'id': 1, 'name': 'a'}, 5)]
  second = [_row('demo.users', {'id': 2, 'name': 'b'}, 5)]
  results, dead = _write(stream_load_server, [(('demo.users', 0), first),
                                              (('demo.users', 1), second)])
  assert not dead and len({r.label for r in results}) == 2
  assert _count(stream_load_server, 'demo.users') == 2


def test_a_failed_batch_stops_the_later_batches_of_its_key(make_stream_load_server):
  # If batch 1 of a key fails for good, batch 2 must not load: after a restart
  # batch 1 would be re-sent and overwrite the newer values.
  server = make_stream_load_server()
  server.inject_fault('slow', times=1, delay_secs=0.5)
  server.inject_fault('http_503', times=None)
  first = [_row('demo.users', {'id': 7, 'name': 'old'}, 1)]
  second = [_row('demo.users', {'id': 7, 'name': 'new'}, 2)]
  with pytest.raises(StreamLoadUnavailableError):
    _write(server, [(('demo.users', 0), first), (('demo.users', 0), second)], max_retries=1)
  assert not [load for load in server.loads if load['status'] == 'Success']
  assert len({load['label'] for load in server.loads if load['label']}) <= 1


def test_a_batch_mixing_upserts_and_deletes_sends_the_delete_sign_header(stream_load_server):
  # With split_on_column_change off, a delete may come after rows without the sign.
  rows = [_row('demo.users', {'id': 1, 'name': 'a'}, 1), _row('demo.users', {'id': 2, 'name': 'b'}, 2),
          _row('demo.users', {'id': 1, '__DORIS_DELETE_SIGN__': 1}, 3)]
  _write(stream_load_server, [(('demo.users', 0), rows)])
  assert stream_load_server.loads[-1]['headers'].get('hidden_columns') == '__DORIS_DELETE_SIGN__'
  assert stream_load_server.query('SELECT id FROM demo.users') == [(2,)]


def test_every_flush_thread_starts_with_the_engine():
  """A pool that grew at the first burst stepped the job's memory up then (the soak)."""
  from transforms.stream_load.sink import _Engine  # pylint: disable=import-outside-toplevel

  class _Client:
    def __init__(self, config):
      self.config = config

    def close(self):
      pass

  config = StreamLoadConfig(fe_nodes=('http://127.0.0.1:1',), user='root', password='')
  engine = _Engine(SinkSettings(config, flush_workers=5), monitor=None, client_factory=_Client)
  try:
    assert len(engine.executor._threads) == 5  # pylint: disable=protected-access
  finally:
    engine.close()


def test_a_tables_key_model_is_asked_by_its_first_load_not_by_the_submitter():
  """Hundreds of tables' first batches would each wait a round trip to the FE, in turn, on
  the thread that cuts batches; until it is known, a table's batches load in order (safe)."""
  import threading  # pylint: disable=import-outside-toplevel
  from transforms.stream_load.scheduler import Job  # pylint: disable=import-outside-toplevel
  from transforms.stream_load.sink import _Engine  # pylint: disable=import-outside-toplevel
  asked = []

  class _Client:
    def __init__(self, config):
      self.config = config

    def table_keys_type(self, table):
      asked.append((table, threading.current_thread().name))
      return 'DUP_KEYS' if table == 'demo.logs' else 'UNIQUE_KEYS'

    def close(self):
      pass

  config = StreamLoadConfig(fe_nodes=('http://127.0.0.1:1',), user='root', password='')
  engine = _Engine(SinkSettings(config, flush_workers=2), monitor=None, client_factory=_Client)
  engine.loader.load = lambda key, table, rows, encoded: None
  try:
    for table in ('demo.logs', 'demo.users'):
      assert engine.is_ordered(table)  # not known yet: in order
      job = Job((table, 0), (table, [], b''))
      engine.submit(table, job)
      job.future.result(timeout=30)
    assert [table for table, _ in asked] == ['demo.logs', 'demo.users']
    assert all(name.startswith('stream-load') for _, name in asked)
    assert not engine.is_ordered('demo.logs') and engine.is_ordered('demo.users')
  finally:
    engine.close()
