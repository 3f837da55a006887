"""Every body format and group (merge) commit mode loads the same rows as JSON, end to end.

Plain events into a duplicate-key table and Debezium changes (inserts, updates, deletes) into a
unique-key table, through the CLI's run on the local runner, into the local Stream Load server in
its Doris and StarRocks flavours; checked with SQL against what the JSON run loads.
"""

import orjson
import pytest

from tests.fixtures.stream_load import DEMO_SCHEMA
from tests.harness import pipeline_argv, read_dead_letters, run_in_process
from tests.pipelines.helpers import assert_events_exactly_once, event_bytes

pytestmark = pytest.mark.e2e

N_EVENTS = 600


def _debezium(op, before, after):
  return orjson.dumps({'op': op, 'before': before, 'after': after,
                       'source': {'db': 'shop', 'table': 'users'}})


def _user_changes():
  changes = [_debezium('c', None, {'id': i, 'name': f'u{i}', 'email': f'u{i}@x.org', 'age': 30})
             for i in range(60)]
  changes += [_debezium('u', {'id': i}, {'id': i, 'name': f'v{i}', 'email': None, 'age': 31})
              for i in range(0, 60, 2)]
  changes += [_debezium('d', {'id': i}, None) for i in range(0, 60, 5)]
  keys = [str(orjson.loads(c)['after']['id'] if orjson.loads(c)['after'] else
              orjson.loads(c)['before']['id']).encode() for c in changes]
  return changes, keys


def _expected_users():
  users = {i: (i, f'u{i}', f'u{i}@x.org', 30) for i in range(60)}
  users.update({i: (i, f'v{i}', None, 31) for i in range(0, 60, 2)})
  for i in range(0, 60, 5):
    users.pop(i)
  return [users[i] for i in sorted(users)]


CASES = [
    ('doris', 'json', 'off_mode'),
    ('doris', 'csv', 'off_mode'),
    ('doris', 'arrow', 'off_mode'),
    ('doris', 'json', 'sync_mode'),
    ('doris', 'csv', 'async_mode'),
    ('starrocks', 'json', 'off_mode'),
    ('starrocks', 'csv', 'off_mode'),
    ('starrocks', 'json', 'sync_mode'),
    ('starrocks', 'csv', 'async_mode'),
]


@pytest.mark.parametrize('target, load_format, group_commit', CASES,
                         ids=['-'.join(case) for case in CASES])
def test_each_format_and_commit_mode_loads_the_same_rows_as_json(
    kafka_cluster, make_stream_load_server, tmp_path, target, load_format, group_commit):
  schema = open(DEMO_SCHEMA, encoding='utf-8').read()
  if target == 'starrocks':  # deletes through __op need a primary-key table in StarRocks
    schema = schema.replace('UNIQUE KEY(id)', 'PRIMARY KEY(id)')
  server = make_stream_load_server(flavor=target, schema_sql=schema, group_commit_interval_ms=200)
  events, users = kafka_cluster.unique_topic('fmt-events'), kafka_cluster.unique_topic('fmt-users')
  # Text that needs care in CSV: the separators, quotes, a literal \N.
  kafka_cluster.produce(events, event_bytes(range(N_EVENTS - 3)) + [
      orjson.dumps({'event_id': N_EVENTS - 3, 'user_id': 1, 'event_type': 'a\x01b',
                    'amount': '1.00', 'payload': 'x'}),
      orjson.dumps({'event_id': N_EVENTS - 2, 'user_id': 1, 'event_type': '\\N',
                    'amount': '1.00', 'payload': 'say "hi"'}),
      orjson.dumps({'event_id': N_EVENTS - 1, 'user_id': 1, 'event_type': 'y',
                    'amount': '1.00', 'payload': None})])
  changes, keys = _user_changes()
  kafka_cluster.produce(users, changes, keys=keys)
  flags = dict(topic_table_map=f'{events}=demo.events,{users}=demo.users', cdc_format='auto',
               target=target, load_format=load_format, group_commit=group_commit,
               batch_rows=200)
  if group_commit != 'off_mode':
    flags['delivery_guarantee'] = 'at_least_once'
  group = f'g-{events}'
  run_in_process(pipeline_argv(kafka_cluster, server, [events, users], group,
                               str(tmp_path / 'dead'), **flags))
  if group_commit == 'async_mode':
    # Async loads return once written ahead; the rows are visible at the merged commit.
    server.flush_group_commits()

  assert read_dead_letters(str(tmp_path / 'dead')) == []
  rows = server.query('SELECT event_id, event_type, payload FROM demo.events ORDER BY event_id')
  assert len(rows) == N_EVENTS and rows[-3:] == [
      (N_EVENTS - 3, 'a\x01b', 'x'), (N_EVENTS - 2, '\\N', 'say "hi"'), (N_EVENTS - 1, 'y', None)]
  assert server.query('SELECT count(DISTINCT event_id) FROM demo.events') == [(N_EVENTS,)]
  assert server.query('SELECT id, name, email, age FROM demo.users ORDER BY id') == (
      _expected_users())
  assert kafka_cluster.committed(group, events) == kafka_cluster.end_offsets(events)
  loads = [entry for entry in server.loads if entry['table'] == 'events']
  assert {entry['headers'].get('format', 'csv') for entry in loads} == {load_format}
  if group_commit != 'off_mode':
    assert all(entry.get('group_commit') for entry in loads)
    assert server.group_commits, 'no load was merged'
