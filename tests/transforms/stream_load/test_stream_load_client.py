"""StreamLoadClient against the local Stream Load server: every outcome."""

import orjson
import pytest
import requests

from transforms.stream_load.bodies import encode_dicts
from transforms.stream_load import StreamLoadClient, StreamLoadConfig, TableLoadOptions
from transforms.stream_load.errors import (AuthenticationError, DataQualityError,
                                           RetriesExhaustedError, TableNotFoundError)

pytestmark = pytest.mark.transform

PASSWORD = 'secret'


def _client(server, **overrides):
  settings = dict(fe_nodes=tuple(server.fe_urls), user='root', password=PASSWORD,
                  backoff_initial_secs=0.01, backoff_max_secs=0.05, max_retries=4,
                  load_timeout_secs=10)
  settings.update(overrides)
  return StreamLoadClient(StreamLoadConfig(**settings))


def _users(n, start=0, name='u'):
  return encode_dicts({'id': i, 'name': f'{name}{i}', 'age': i % 90} for i in range(start, start + n))


def _count(server, table='demo.users'):
  return server.query(f'SELECT count(*) FROM {table}')[0][0]


def test_load_goes_fe_to_be_with_credentials_on_both(stream_load_server):
  with _client(stream_load_server) as client:
    outcome = client.load('demo.users', _users(100).body, 'label-basic', rows=100)
  assert outcome.status == 'Success' and outcome.loaded_rows == 100 and outcome.attempts == 1
  assert _count(stream_load_server) == 100
  log = stream_load_server.request_log
  fe = [r for r in log if r['node'].startswith('fe') and r['path'].endswith('_stream_load')]
  be = [r for r in log if r['node'].startswith('be') and r['path'].endswith('_stream_load')]
  assert fe and be and all(r['had_authorization'] for r in fe + be)


def test_label_already_exists_finished_counts_as_success(stream_load_server):
  body = _users(10).body
  with _client(stream_load_server) as client:
    first = client.load('demo.users', body, 'label-twice', rows=10)
    second = client.load('demo.users', body, 'label-twice', rows=10)
  assert first.status == 'Success'
  assert second.status == 'Label Already Exists' and second.loaded_rows == 10
  assert _count(stream_load_server) == 10


@pytest.mark.parametrize('fault', ['http_500', 'http_503', 'reset_mid_body', 'too_many_versions',
                                   'txn_limit'])
def test_retryable_faults_are_retried_with_the_same_label(stream_load_server, fault):
  stream_load_server.inject_fault(fault, times=2)
  with _client(stream_load_server) as client:
    outcome = client.load('demo.users', _users(50).body, f'label-{fault}', rows=50)
  assert outcome.status in ('Success', 'Label Already Exists')
  assert outcome.attempts == 3
  assert _count(stream_load_server) == 50
  labels = {load['label'] for load in stream_load_server.loads if load['label']}
  assert labels == {f'label-{fault}'}


def test_publish_timeout_is_loaded_and_never_retried(stream_load_server):
  stream_load_server.inject_fault('publish_timeout', times=1)
  with _client(stream_load_server) as client:
    outcome = client.load('demo.users', _users(20).body, 'label-publish', rows=20)
  assert outcome.status == 'Publish Timeout' and outcome.attempts == 1
  assert _count(stream_load_server) == 20


def test_retries_run_out_with_a_clear_error(stream_load_server):
  stream_load_server.inject_fault('http_503', times=None)
  with _client(stream_load_server, max_retries=2) as client:
    with pytest.raises(RetriesExhaustedError, match='gave up after 3 attempts'):
      client.load('demo.users', _users(5).body, 'label-exhausted', rows=5)
  stream_load_server.clear_faults()
  assert _count(stream_load_server) == 0


def test_slow_be_past_the_timeout_loads_once(stream_load_server):
  stream_load_server.inject_fault('slow', times=1, delay_secs=2.5)
  with _client(stream_load_server, load_timeout_secs=0.5) as client:
    outcome = client.load('demo.users', _users(30).body, 'label-slow', rows=30)
  assert outcome.attempts >= 2
  assert _count(stream_load_server) == 30


def test_wrong_password_fails_at_once(stream_load_server):
  config = dict(password='wrong')
  with _client(stream_load_server, **config) as client:
    with pytest.raises(AuthenticationError) as info:
      client.load('demo.users', _users(5).body, 'label-auth', rows=5)
  assert 'wrong' not in str(info.value)
  assert not stream_load_server.loads or all(
      load['status'] != 'Success' for load in stream_load_server.loads)


def test_unknown_table_fails_at_once(stream_load_server):
  with _client(stream_load_server) as client:
    with pytest.raises(TableNotFoundError):
      client.load('demo.nosuch', _users(5).body, 'label-nosuch', rows=5)


def test_rejected_rows_come_back_from_the_error_url(stream_load_server):
  body = encode_dicts([{'id': 1, 'name': 'ok'}, {'id': 'not-a-number', 'name': 'bad'}]).body
  with _client(stream_load_server) as client:
    with pytest.raises(DataQualityError) as info:
      client.load('demo.users', body, 'label-bad-data', rows=2)
  assert info.value.rejected, 'the error log should list the rejected row'
  assert any('not-a-number' in line for line in info.value.rejected)
  assert _count(stream_load_server) == 0


def test_filtered_rows_within_max_filter_ratio_are_reported(stream_load_server):
  body = encode_dicts([{'id': i, 'name': 'ok'} for i in range(9)] +
                      [{'id': 'bad', 'name': 'x'}]).body
  with _client(stream_load_server) as client:
    outcome = client.load('demo.users', body, 'label-ratio', rows=10,
                          options=TableLoadOptions(max_filter_ratio=0.5))
  assert outcome.status == 'Success' and outcome.loaded_rows == 9 and outcome.filtered_rows == 1
  assert outcome.rejected
  assert _count(stream_load_server) == 9


def test_gzip_bodies_load(stream_load_server):
  with _client(stream_load_server, compression='gzip') as client:
    outcome = client.load('demo.users', _users(200).body, 'label-gzip', rows=200)
  assert outcome.loaded_rows == 200
  assert stream_load_server.loads[-1]['headers'].get('compress_type') == 'gz'
  assert _count(stream_load_server) == 200


def test_fe_failover_to_the_next_fe(make_stream_load_server):
  server = make_stream_load_server(num_fes=2)
  server.inject_fault('fe_down', node=0, times=None)
  with _client(server) as client:
    for i in range(4):
      client.load('demo.users', _users(5, start=i * 5).body, f'label-fe-{i}', rows=5)
  assert _count(server) == 20


def test_a_be_that_is_down_is_retried_elsewhere(make_stream_load_server):
  server = make_stream_load_server(num_bes=2)
  server.inject_fault('be_down', node=0, times=None)
  with _client(server, max_retries=6) as client:
    for i in range(4):
      client.load('demo.users', _users(5, start=i * 5).body, f'label-be-{i}', rows=5)
  assert _count(server) == 20


def test_two_phase_commit_prepares_then_commits_the_transaction(stream_load_server):
  with _client(stream_load_server, two_phase_commit=True) as client:
    outcome = client.load('demo.users', _users(12).body, 'label-2pc', rows=12)
  assert outcome.txn_id and outcome.txn_id > 0
  assert _count(stream_load_server) == 12
  # The load was a prepare (two_phase_commit header), followed by a commit of that transaction.
  (load,) = stream_load_server.loads
  assert load['headers'].get('two_phase_commit') == 'true'
  paths = [r['path'] for r in stream_load_server.request_log]
  assert paths[-1] == '/api/demo/_stream_load_2pc'
  assert paths.index('/api/demo/_stream_load_2pc') > paths.index('/api/demo/users/_stream_load')


def test_starrocks_transaction_api(make_stream_load_server):
  server = make_stream_load_server(flavor='starrocks')
  with _client(server, target='starrocks', two_phase_commit=True) as client:
    body = encode_dicts(({'id': i, 'name': f'n{i}'} for i in range(7)), as_array=True).body
    outcome = client.load('demo.users', body, 'label-sr-txn', rows=7)
  assert outcome.status == 'Success'
  assert _count(server) == 7
  # begin -> load -> prepare -> commit, in that order, and no plain stream load.
  steps = [r['path'].rsplit('/', 1)[1] for r in server.request_log
           if '/api/transaction/' in r['path'] and r['node'].startswith('fe')]
  assert steps == ['begin', 'load', 'prepare', 'commit']
  assert not [r for r in server.request_log if r['path'].endswith('/_stream_load')]


def test_starrocks_plain_load(make_stream_load_server):
  server = make_stream_load_server(flavor='starrocks')
  with _client(server, target='starrocks') as client:
    body = encode_dicts(({'id': i, 'name': f'n{i}'} for i in range(7)), as_array=True).body
    outcome = client.load('demo.users', body, 'label-sr-plain', rows=7)
  assert outcome.loaded_rows == 7
  assert _count(server) == 7


def test_invalid_label_is_refused_before_sending(stream_load_server):
  with _client(stream_load_server) as client:
    with pytest.raises(ValueError, match='label'):
      client.load('demo.users', b'{}', 'bad label!', rows=1)
  assert not stream_load_server.request_log


def test_a_prepared_but_uncommitted_label_is_committed_on_resend(stream_load_server):
  """A run that died between 2PC prepare and commit: the re-sent batch commits the prepared load."""
  body = _users(15).body
  import requests as plain
  base = {'label': 'label-orphan', 'format': 'json', 'read_json_by_line': 'true',
          'two_phase_commit': 'true', 'Expect': '100-continue'}
  loc = plain.put(stream_load_server.fe_url + '/api/demo/users/_stream_load', headers=base,
                  auth=('root', PASSWORD), allow_redirects=False).headers['Location']
  prepared = plain.put(loc, data=body, headers=base, auth=('root', PASSWORD)).json()
  assert prepared['Status'] == 'Success' and _count(stream_load_server) == 0
  with _client(stream_load_server, two_phase_commit=True) as client:
    outcome = client.load('demo.users', body, 'label-orphan', rows=15)
  assert outcome.status == 'Label Already Exists'
  assert _count(stream_load_server) == 15


def test_starrocks_transaction_survives_a_be_error_and_a_stale_label(make_stream_load_server):
  server = make_stream_load_server(flavor='starrocks')
  server.inject_fault('http_503', times=2)
  with _client(server, target='starrocks', two_phase_commit=True) as client:
    body = encode_dicts(({'id': i, 'name': f'n{i}'} for i in range(9)), as_array=True).body
    outcome = client.load('demo.users', body, 'label-sr-fault', rows=9)
  assert outcome.status in ('Success', 'Label Already Exists')
  assert _count(server) == 9


def test_gzip_for_starrocks_uses_its_compression_header(make_stream_load_server):
  server = make_stream_load_server(flavor='starrocks')
  with _client(server, target='starrocks', compression='gzip') as client:
    body = encode_dicts(({'id': i, 'name': f'n{i}'} for i in range(50)), as_array=True).body
    outcome = client.load('demo.users', body, 'label-sr-gzip', rows=50)
  assert outcome.loaded_rows == 50
  headers = server.loads[-1]['headers']
  assert headers.get('compression') == 'gzip' and 'compress_type' not in headers
  assert _count(server) == 50
