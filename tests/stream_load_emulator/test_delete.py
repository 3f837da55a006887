"""DELETE FROM ... WHERE on the emulator: over the HTTP SQL API and the MySQL port, with
Doris's refusals."""

import json

import pymysql
import pytest
import requests

from tests.fixtures.stream_load import PASSWORD, USER
from tests.stream_load_emulator.helpers import stream_load

pytestmark = pytest.mark.transform

SCHEMA = """CREATE DATABASE shop;
CREATE TABLE shop.orders (_source_db VARCHAR(64) NOT NULL, _source_table VARCHAR(64) NOT NULL,
  id BIGINT NOT NULL, amount INT) UNIQUE KEY(_source_db, _source_table, id)
  DISTRIBUTED BY HASH(id) BUCKETS 1;
CREATE TABLE shop.totals (day DATE NOT NULL, amount BIGINT SUM) AGGREGATE KEY(day)
  DISTRIBUTED BY HASH(day) BUCKETS 1;"""


@pytest.fixture(name='server')
def _server(make_stream_load_server):
  server = make_stream_load_server(schema_sql=SCHEMA)
  body = '\n'.join(json.dumps({'_source_db': 's', '_source_table': t, 'id': i, 'amount': i})
                   for t in ('o1', 'o2') for i in range(3)).encode()
  result = stream_load(server, 'shop', 'orders', body,
                       {'format': 'json', 'read_json_by_line': 'true'}, auth=(USER, PASSWORD))
  assert result['Status'] == 'Success'
  return server


def _sql_api(server, stmt):
  response = requests.post(server.fe_url + '/api/query/default_cluster/shop', json={'stmt': stmt},
                           auth=(USER, PASSWORD), timeout=30)
  return response.json()


def _left(server):
  return sorted(server.query('SELECT _source_table, id FROM shop.orders'))


def test_the_sql_api_deletes_the_rows_matching_every_condition(server):
  answer = _sql_api(server, "DELETE FROM `shop`.`orders` WHERE `_source_db` = 's' AND "
                            "`_source_table` = 'o1' AND id IN (0, 2)")
  assert answer['code'] == 0 and answer['data']['type'] == 'exec_status'
  assert _left(server) == [('o1', 1), ('o2', 0), ('o2', 1), ('o2', 2)]


def test_the_mysql_port_deletes_as_the_sql_api_does(server):
  conn = pymysql.connect(host='127.0.0.1', port=server.query_port, user=USER, password=PASSWORD,
                         database='shop', autocommit=True, connect_timeout=10)
  try:
    with conn.cursor() as cur:
      cur.execute("DELETE FROM orders WHERE _source_table = 'o2' AND amount >= 1")
  finally:
    conn.close()
  assert _left(server) == [('o1', 0), ('o1', 1), ('o1', 2), ('o2', 0)]


@pytest.mark.parametrize('stmt, message', [
    ('DELETE FROM orders', 'Where clause only supports compound predicate'),
    ("DELETE FROM orders WHERE id = 1 OR _source_table = 'o1'",
     'Where clause only supports compound predicate'),
    ('DELETE FROM orders WHERE id = amount', 'Where clause only supports compound predicate'),
    ('DELETE FROM orders WHERE nope = 1', "Unknown column 'nope' in 'orders'"),
    ('DELETE FROM missing WHERE id = 1', "Unknown table 'missing'"),
    ("DELETE FROM totals WHERE amount = 3",
     'delete predicate on value column only supports Unique table with merge-on-write'),
])
def test_what_doris_refuses_is_refused_with_its_message_and_nothing_goes(server, stmt, message):
  answer = _sql_api(server, stmt)
  assert answer['code'] == 1 and message in answer['data'], answer
  assert len(_left(server)) == 6
