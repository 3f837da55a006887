"""Bad input: each bad record lands in dead letters with its reason; the rest loads, once.

One run reads a topic that mixes good events with every kind of bad record (routing by a
``table`` field, so an unknown table is a per-record problem), plus an empty topic. A second run
reads Debezium envelopes, one of them a delete with neither a ``before`` row nor a Kafka key.
"""

import base64

import orjson

from tests.harness import pipeline_argv, read_dead_letters, run_in_process
from tests.pipelines.helpers import assert_users_hold, event, event_tuple, events_in_table, user
import pytest

pytestmark = pytest.mark.reliability

MAX_RECORD_BYTES = 600 * 1024
HUGE_FIELD_BYTES = 500 * 1024  # a STRING field, under MAX_RECORD_BYTES


def _routed_event(i, **overrides):
  row = dict(event(i), table='demo.events')
  row.update(overrides)
  return orjson.dumps(row)


# (value, stage, reason prefix): what each bad record must become.
BAD_RECORDS = [
    (b'{"table": "demo.events", "event_id": 9001,', 'parse', 'invalid_json'),
    (b'\xff\xfe{"table": "demo.events", "event_id": 9002}', 'parse', 'invalid_utf8'),
    (b'[1, 2, 3]', 'parse', 'not_object'),
    (b'"just a string"', 'parse', 'not_object'),
    (orjson.dumps({'event_id': 9003}), 'parse', 'missing_table'),
    (_routed_event(9004, payload='o' * (MAX_RECORD_BYTES + 10)), 'parse', 'too_large'),
    (_routed_event(9005, table='demo.no_such_table'), 'load', 'table_not_found'),
    (_routed_event(9006, event_id='not-a-number'), 'load', 'data_quality'),
    (_routed_event(9007, event_type='e' * 3000), 'load', 'data_quality'),
    (b'', 'parse', 'empty_value'),
]
# A huge field in a STRING column, under --max_record_bytes: a good record.
HUGE_BUT_VALID_ID = 5000


def test_each_bad_record_is_dead_lettered_with_its_reason_and_the_rest_loads_once(
    kafka_cluster, stream_load_server, tmp_path):
  topic, empty_topic = kafka_cluster.unique_topic('bad'), kafka_cluster.unique_topic('empty')
  good_ids = list(range(600))
  values = [_routed_event(i) for i in good_ids]
  huge_event = dict(event(HUGE_BUT_VALID_ID, payload_size=HUGE_FIELD_BYTES), table='demo.events')
  values.append(orjson.dumps(huge_event))
  # Bad records spread between the good ones, so they share batches with good rows.
  for n, (value, _, _) in enumerate(BAD_RECORDS):
    values.insert(37 * n + 5, value)
  kafka_cluster.produce(topic, values)
  kafka_cluster.produce(empty_topic, [b'x'])  # creates the topic ...
  group = f'g-{topic}'
  # ... and the group starts past its only record: the pipeline sees an empty topic.
  kafka_cluster.commit(group, empty_topic, {p: o for p, o in
                                            kafka_cluster.end_offsets(empty_topic).items()})
  dead_dir = str(tmp_path / 'dead')
  summary = run_in_process(pipeline_argv(
      kafka_cluster, stream_load_server, [topic, empty_topic], group, dead_dir,
      table_field='table', max_record_bytes=MAX_RECORD_BYTES, batch_rows=100))

  rows = stream_load_server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events')
  assert rows == [(len(good_ids) + 1, len(good_ids) + 1)]
  assert events_in_table(stream_load_server)[:len(good_ids)] == [
      event_tuple(event(i)) for i in good_ids]
  huge = stream_load_server.query(
      f'SELECT length(payload) FROM demo.events WHERE event_id = {HUGE_BUT_VALID_ID}')
  assert huge == [(len(event(HUGE_BUT_VALID_ID, payload_size=HUGE_FIELD_BYTES)['payload']),)]

  # produce() spreads records round robin: record n is at partition n % 4, offset n // 4.
  partitions = kafka_cluster.num_partitions
  expected = {(values.index(value) % partitions, values.index(value) // partitions): (stage, reason)
              for value, stage, reason in BAD_RECORDS}
  letters = read_dead_letters(dead_dir)
  got = {(letter['partition'], letter['offset']): letter for letter in letters}
  assert sorted(got) == sorted(expected), [letter['reason'][:60] for letter in letters]
  for position, (stage, reason) in expected.items():
    letter = got[position]
    assert letter['topic'] == topic
    assert (letter['stage'], letter['reason'].split(':')[0]) == (stage, reason), letter['reason']
  non_utf8 = got[next(p for p, (_, r) in expected.items() if r == 'invalid_utf8')]
  assert base64.b64decode(non_utf8['payload_base64']) == BAD_RECORDS[1][0]
  wrong_type = next(letter for letter in letters if 'not-a-number' in letter.get('payload', ''))
  assert 'event_id' in wrong_type['reason']  # the server's reason for the rejected row
  # Every offset is accounted for: loaded or dead-lettered, so all of it is committed.
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
  assert kafka_cluster.committed(group, empty_topic) == kafka_cluster.end_offsets(empty_topic)
  assert summary.totals['dead_letters_written'] == len(BAD_RECORDS)


def _debezium(op, before, after):
  return orjson.dumps({'op': op, 'before': before, 'after': after,
                       'source': {'db': 'demo', 'table': 'users'}})


def test_a_cdc_delete_without_a_key_is_dead_lettered_and_the_other_changes_apply(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('cdc')
  values = [_debezium('c', None, user(i)) for i in range(50)]
  values += [_debezium('u', user(i), user(i, 1)) for i in range(0, 50, 5)]
  values += [_debezium('d', user(i, 1), None) for i in range(0, 10, 5)]  # deletes 0 and 5
  keys = [str(orjson.loads(v)['after' if orjson.loads(v)['after'] else 'before']['id']).encode()
          for v in values]
  keyless_delete = _debezium('d', None, None)
  values.append(keyless_delete)
  keys.append(None)
  kafka_cluster.produce(topic, values, keys=keys)
  group = f'g-{topic}'
  dead_dir = str(tmp_path / 'dead')
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [topic], group, dead_dir,
                               topic_table_map=f'{topic}=demo.users', cdc_format='debezium'))

  expected = {i: (1 if i % 5 == 0 else 0) for i in range(50) if i not in (0, 5)}
  assert_users_hold(stream_load_server, expected)
  letters = read_dead_letters(dead_dir)
  assert len(letters) == 1
  assert letters[0]['stage'] == 'parse'
  assert letters[0]['reason'].startswith('bad_envelope: Debezium delete without "before" row')
  assert letters[0]['payload'].encode() == keyless_delete
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_a_run_whose_records_mostly_go_to_dead_letters_stops_and_commits_none_of_them(
    kafka_cluster, stream_load_server, tmp_path):
  """--cdc_format=debezium on plain JSON: every record is a bad envelope. Past the dead-letter
  budget the run fails naming the cause, commits nothing and loads nothing; the corrected run
  then loads every record."""
  from tests.harness import run_cli
  topic = kafka_cluster.unique_topic('budget')
  group = f'g-{topic}'
  kafka_cluster.produce(topic, [orjson.dumps(event(i)) for i in range(500)])
  dead = str(tmp_path / 'dead')
  result = run_cli(pipeline_argv(kafka_cluster, stream_load_server, [topic], group, dead,
                                 cdc_format='debezium', default_database='demo'), timeout_secs=180)
  assert result.returncode == 1, result.stderr[-3000:]
  error = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(error) == 1 and '--max_dead_letter_ratio=0.1' in error[0], result.stderr[-3000:]
  assert 'bad_envelope' in error[0] and 'Traceback' not in result.stderr
  assert kafka_cluster.committed(group, topic) == {}
  assert events_in_table(stream_load_server) == []

  fixed = run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [topic], group, dead,
                                       table='demo.events'))
  assert fixed.rows_loaded('demo.events') == 500
  assert sorted(row[0] for row in events_in_table(stream_load_server)) == list(range(500))
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)


def test_a_ratio_of_one_writes_every_bad_record_to_dead_letters_and_goes_on(
    kafka_cluster, stream_load_server, tmp_path):
  topic = kafka_cluster.unique_topic('budget-off')
  group = f'g-{topic}'
  kafka_cluster.produce(topic, [orjson.dumps(event(i)) for i in range(300)])
  dead = str(tmp_path / 'dead')
  run_in_process(pipeline_argv(kafka_cluster, stream_load_server, [topic], group, dead,
                               cdc_format='debezium', default_database='demo',
                               max_dead_letter_ratio=1))
  letters = read_dead_letters(dead)
  assert len(letters) == 300 and {l['reason'].split(':')[0] for l in letters} == {'bad_envelope'}
  assert kafka_cluster.committed(group, topic) == kafka_cluster.end_offsets(topic)
