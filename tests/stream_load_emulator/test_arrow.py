"""``format: arrow`` (Doris >= 2.1, apache/doris#26709): the body is an Arrow IPC stream.

Doris reads it with ``ArrowStreamReader`` (``be/src/vec/exec/format/arrow/
arrow_stream_reader.cpp``): columns are matched by field name, an unreadable stream fails the
load with ``failed to open stream reader: <Arrow's message>``.
"""

import datetime
import decimal
import io

import pytest

from tests.stream_load_emulator.helpers import stream_load

pytestmark = pytest.mark.transform

pa = pytest.importorskip('pyarrow')

ARROW = {'format': 'arrow'}
TYPES_SCHEMA = '''
CREATE DATABASE IF NOT EXISTS t;
CREATE TABLE t.all_types (
  k BIGINT NOT NULL,
  b BOOLEAN NULL,
  ti TINYINT NULL,
  li LARGEINT NULL,
  f FLOAT NULL,
  d DOUBLE NULL,
  dec DECIMAL(10, 3) NULL,
  dt DATE NULL,
  ts DATETIME(3) NULL,
  v VARCHAR(5) NULL,
  s STRING NULL,
  j JSON NULL
) DUPLICATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1;
'''


def stream(table, batches=1):
  """An Arrow IPC stream of ``table`` (split in ``batches`` record batches)."""
  sink = io.BytesIO()
  with pa.ipc.new_stream(sink, table.schema) as writer:
    size = max(1, -(-table.num_rows // batches))
    for batch in table.to_batches(max_chunksize=size):
      writer.write_batch(batch)
  return sink.getvalue()


def test_arrow_stream_loads_events(stream_load_server):
  srv = stream_load_server
  table = pa.table({
      'event_id': pa.array([1, 2, 3], pa.int64()),
      'user_id': pa.array([10, None, 30], pa.int64()),
      'event_type': pa.array(['click', 'view', 'buy'], pa.string()),
      'amount': pa.array([decimal.Decimal('1.50'), None, decimal.Decimal('-2.25')],
                         pa.decimal128(12, 2)),
      'ts': pa.array([datetime.datetime(2024, 5, 1, 12, 0, 1), None, None],
                     pa.timestamp('us')),
  })
  res = stream_load(srv, 'demo', 'events', stream(table, batches=2), dict(ARROW, label='a1'))
  assert res['Status'] == 'Success', res
  assert (res['NumberTotalRows'], res['NumberLoadedRows']) == (3, 3)
  rows = srv.query('SELECT event_id, user_id, event_type, amount, ts FROM demo.events '
                   'ORDER BY event_id')
  assert rows == [(1, 10, 'click', decimal.Decimal('1.50'), '2024-05-01 12:00:01'),
                  (2, None, 'view', None, None),
                  (3, 30, 'buy', decimal.Decimal('-2.25'), None)]


def test_arrow_null_into_not_null_is_filtered(stream_load_server):
  srv = stream_load_server
  table = pa.table({'event_id': pa.array([1, 2], pa.int64()),
                    'event_type': pa.array(['ok', None], pa.string())})
  res = stream_load(srv, 'demo', 'events', stream(table), dict(ARROW, max_filter_ratio='0.5'))
  assert (res['NumberLoadedRows'], res['NumberFilteredRows']) == (1, 1), res


def test_arrow_types_map_to_doris_columns(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=TYPES_SCHEMA)
  table = pa.table({
      'k': pa.array([1, 2], pa.int64()),
      'b': pa.array([True, False]),
      'ti': pa.array([-5, 7], pa.int8()),
      'li': pa.array(['170141183460469231731687303715884105727', '-1']),  # LARGEINT: utf8
      'f': pa.array([1.5, None], pa.float32()),
      'd': pa.array([2.25, -0.5], pa.float64()),
      'dec': pa.array([decimal.Decimal('12.345'), decimal.Decimal('-0.001')],
                      pa.decimal128(10, 3)),
      'dt': pa.array([datetime.date(2024, 2, 29), None], pa.date32()),
      'ts': pa.array([datetime.datetime(2024, 1, 1, 8, 30, 0, 123456), None],
                     pa.timestamp('ns')),
      'v': pa.array(['abcde', 'x'], pa.large_string()),
      's': pa.array([b'bytes', None], pa.binary()),
      'j': pa.array(['{"a": 1}', None]),
  })
  res = stream_load(srv, 't', 'all_types', stream(table), ARROW)
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2, res
  assert srv.query('SELECT * FROM t.all_types ORDER BY k') == [
      (1, 1, -5, '170141183460469231731687303715884105727', 1.5, 2.25,
       decimal.Decimal('12.345'), '2024-02-29', '2024-01-01 08:30:00.123', 'abcde', 'bytes',
       '{"a": 1}'),
      (2, 0, 7, -1, None, -0.5, decimal.Decimal('-0.001'), None, None, 'x', None, None)]


def test_arrow_timezone_aware_timestamps_are_utc(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=TYPES_SCHEMA)
  ts = datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(
      hours=2)))
  table = pa.table({'k': pa.array([1], pa.int64()),
                    'ts': pa.array([ts], pa.timestamp('ms', tz='+02:00'))})
  assert stream_load(srv, 't', 'all_types', stream(table), ARROW)['Status'] == 'Success'
  assert srv.query('SELECT ts FROM t.all_types') == [('2024-01-01 08:00:00.000',)]


def test_arrow_value_too_long_is_filtered(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=TYPES_SCHEMA)
  table = pa.table({'k': pa.array([1, 2], pa.int64()), 'v': pa.array(['short', 'toolong'])})
  res = stream_load(srv, 't', 'all_types', stream(table), ARROW)
  assert res['Status'] == 'Fail' and res['NumberFilteredRows'] == 1
  assert res['Message'] == '[DATA_QUALITY_ERROR]too many filtered rows'
  assert srv.query('SELECT count(*) FROM t.all_types') == [(0,)]


def test_not_arrow_is_a_failed_load(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'events', b'{"event_id": 1}\n', dict(ARROW, label='bad'))
  assert res['Status'] == 'Fail'
  assert res['Message'].startswith('[INTERNAL_ERROR]failed to open stream reader: ')
  assert 'metadata bytes' in res['Message']  # Arrow C++'s own text, as Doris relays it
  assert srv.query('SELECT count(*) FROM demo.events') == [(0,)]
  # The failed load's transaction is aborted: the label can be used again.
  good = pa.table({'event_id': pa.array([1], pa.int64()), 'event_type': pa.array(['x'])})
  assert stream_load(srv, 'demo', 'events', stream(good), dict(ARROW, label='bad'))[
      'Status'] == 'Success'


def test_truncated_arrow_stream_fails(stream_load_server):
  table = pa.table({'event_id': pa.array(range(100), pa.int64())})
  body = stream(table)[:-30]
  res = stream_load(stream_load_server, 'demo', 'events', body, ARROW)
  assert res['Status'] == 'Fail'
  assert res['Message'].startswith('[INTERNAL_ERROR]failed to')


def test_arrow_field_that_is_no_column_fails_the_load(stream_load_server):
  table = pa.table({'event_id': pa.array([1], pa.int64()), 'bogus': pa.array([1])})
  res = stream_load(stream_load_server, 'demo', 'events', stream(table), ARROW)
  assert res['Status'] == 'Fail'
  assert res['Message'] == (
      '[INTERNAL_ERROR]Failed to convert from arrow to block: No such name in Block, '
      'name=bogus, block_names=event_id, user_id, event_type, amount, ts, payload')


def test_arrow_with_columns_header(stream_load_server):
  srv = stream_load_server
  table = pa.table({'id': pa.array([5], pa.int64()), 'raw_age': pa.array([20], pa.int32())})
  res = stream_load(srv, 'demo', 'users', stream(table),
                    dict(ARROW, columns='id, raw_age, age = raw_age + 1'))
  assert res['Status'] == 'Success', res
  assert srv.query('SELECT id, age FROM demo.users') == [(5, 21)]


def test_empty_arrow_body_loads_nothing(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'events', b'', ARROW)
  assert res['Status'] == 'Success' and res['NumberTotalRows'] == 0


def test_arrow_is_doris_only(make_stream_load_server):
  srv = make_stream_load_server(flavor='starrocks')
  table = pa.table({'event_id': pa.array([1], pa.int64())})
  res = stream_load(srv, 'demo', 'events', stream(table), ARROW)
  assert res['Status'] == 'Fail' and res['Message'] == 'unknown data format, format=arrow'


def test_arrow_count_only(make_stream_load_server):
  srv = make_stream_load_server(count_only=True)
  table = pa.table({'event_id': pa.array(range(1000), pa.int64())})
  res = stream_load(srv, 'demo', 'events', stream(table, batches=4), ARROW)
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 1000
