"""Core Stream Load behaviour of the emulator: redirect, auth, load, labels, response JSON."""

import json

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
import pytest

pytestmark = pytest.mark.transform

JSON_LINES = {'format': 'json', 'read_json_by_line': 'true'}
RESPONSE_KEYS = ['TxnId', 'Label', 'Comment', 'TwoPhaseCommit', 'Status', 'Message',
                 'NumberTotalRows', 'NumberLoadedRows', 'NumberFilteredRows',
                 'NumberUnselectedRows', 'LoadBytes', 'LoadTimeMs', 'BeginTxnTimeMs',
                 'StreamLoadPutTimeMs', 'ReadDataTimeMs', 'WriteDataTimeMs',
                 'CommitAndPublishTimeMs']


def test_fe_redirects_to_be_with_userinfo_without_reading_body(stream_load_server):
  srv = stream_load_server
  r = requests.put(srv.fe_url + '/api/demo/users/_stream_load?x=1', data=b'{"id": 1}' * 1000,
                   headers={'Expect': '100-continue', 'label': 'a'}, auth=AUTH,
                   allow_redirects=False)
  assert r.status_code == 307
  be_port = srv.be_urls[0].rsplit(':', 1)[1]
  assert r.headers['Location'] == (
      'http://root:secret@127.0.0.1:%s/api/demo/users/_stream_load?x=1' % be_port)
  assert srv.query('SELECT count(*) FROM demo.users') == [(0,)]



def test_fe_keeps_the_connection_after_redirecting_a_request_without_a_body(stream_load_server):
  """Jetty closes a connection whose body it left unread; an empty one it keeps (HTTP/1.1)."""
  import http.client  # pylint: disable=import-outside-toplevel
  import urllib.parse  # pylint: disable=import-outside-toplevel
  fe = urllib.parse.urlsplit(stream_load_server.fe_url)
  auth = requests.auth._basic_auth_str(*AUTH)  # pylint: disable=protected-access
  headers = {'Expect': '100-continue', 'Authorization': auth, 'Content-Length': '0'}
  connection = http.client.HTTPConnection(fe.hostname, fe.port, timeout=10)
  try:
    for label in ('probe_1', 'probe_2'):
      connection.request('PUT', '/api/demo/users/_stream_load', body=b'',
                         headers=dict(headers, label=label))
      response = connection.getresponse()
      response.read()
      assert response.status == 307 and response.getheader('Connection') != 'close'
    connection.request('PUT', '/api/demo/users/_stream_load', body=b'{"id": 1}',
                       headers=dict(headers, label='with_body', **{'Content-Length': '9'}))
    response = connection.getresponse()
    response.read()
    assert response.status == 307 and response.getheader('Connection') == 'close'
  finally:
    connection.close()

def test_load_ndjson_success_response_has_doris_keys_in_order(stream_load_server):
  srv = stream_load_server
  body = ndjson([{'id': 1, 'name': 'a', 'age': 30}, {'id': 2, 'name': 'b'}])
  res = stream_load(srv, 'demo', 'users', body, dict(JSON_LINES, label='load_1'))
  assert list(res) == RESPONSE_KEYS
  assert res['Status'] == 'Success' and res['Message'] == 'OK'
  assert res['Label'] == 'load_1' and res['TwoPhaseCommit'] == 'false'
  assert isinstance(res['TxnId'], int) and res['TxnId'] > 0
  assert (res['NumberTotalRows'], res['NumberLoadedRows'], res['LoadBytes']) == (2, 2,
                                                                                   len(body))
  assert srv.query('SELECT id, name, age FROM demo.users ORDER BY id') == [
      (1, 'a', 30), (2, 'b', None)]


def test_be_without_auth_fails_like_doris(stream_load_server):
  srv = stream_load_server
  r = requests.put(srv.fe_url + '/api/demo/users/_stream_load', data=b'{"id": 1}',
                   headers={'Expect': '100-continue', 'format': 'json'}, auth=AUTH)
  # requests drops Authorization on the cross-port redirect: the BE must refuse.
  assert r.status_code == 200
  res = r.json()
  assert res['Status'] == 'Fail'
  assert res['Message'] == '[INTERNAL_ERROR]no valid Basic authorization'
  assert [e['had_authorization'] for e in srv.request_log] == [True, False]


def test_fe_requires_expect_header(stream_load_server):
  r = requests.put(stream_load_server.fe_url + '/api/demo/users/_stream_load', data=b'{}',
                   auth=AUTH, allow_redirects=False)
  assert r.status_code == 200
  assert r.json() == {'status': 'FAILED', 'msg': 'There is no 100-continue header'}


def test_fe_wrong_password_is_http_200_code_401(stream_load_server):
  r = requests.put(stream_load_server.fe_url + '/api/demo/users/_stream_load', data=b'{}',
                   headers={'Expect': '100-continue'}, auth=('root', 'nope'),
                   allow_redirects=False)
  assert r.status_code == 200
  assert r.json()['code'] == 401 and r.json()['msg'] == 'Unauthorized'


def test_label_already_exists_after_finished_load(stream_load_server):
  srv = stream_load_server
  body = ndjson([{'id': 1, 'name': 'a'}])
  first = stream_load(srv, 'demo', 'users', body, dict(JSON_LINES, label='dup'))
  again = stream_load(srv, 'demo', 'users', ndjson([{'id': 9}]), dict(JSON_LINES, label='dup'))
  assert again['Status'] == 'Label Already Exists'
  assert again['ExistingJobStatus'] == 'FINISHED'
  assert again['TxnId'] == -1
  assert again['Message'] == (
      '[LABEL_ALREADY_EXISTS]TStatus: errCode = 2, detailMessage = Label [dup] has already '
      'been used, relate to txn [%d], status [VISIBLE].' % first['TxnId'])
  assert list(again)[:6] == ['TxnId', 'Label', 'Comment', 'TwoPhaseCommit', 'Status',
                             'ExistingJobStatus']
  assert srv.query('SELECT count(*) FROM demo.users') == [(1,)]


def test_get_load_state(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JSON_LINES, label='st'))
  r = requests.get(srv.fe_url + '/api/demo/get_load_state?label=st', auth=AUTH)
  assert r.json() == {'msg': 'success', 'code': 0, 'data': 'VISIBLE', 'count': 0}
  r = requests.get(srv.fe_url + '/api/demo/get_load_state?label=nope', auth=AUTH)
  assert r.json()['data'] == 'UNKNOWN'


def test_sql_api_returns_doris_result_set(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1, 'name': 'a'}]), JSON_LINES)
  r = requests.post(srv.fe_url + '/api/query/default_cluster/demo',
                    json={'stmt': 'SELECT id, name FROM users'}, auth=AUTH)
  body = r.json()
  assert body['msg'] == 'success' and body['code'] == 0
  assert body['data']['type'] == 'result_set'
  assert [m['name'] for m in body['data']['meta']] == ['id', 'name']
  assert body['data']['data'] == [[1, 'a']]


def test_loads_and_request_log_record_attempts_without_authorization(stream_load_server):
  srv = stream_load_server
  stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), dict(JSON_LINES, label='rec'))
  (load,) = srv.loads
  assert load['label'] == 'rec' and load['status'] == 'Success' and load['be'] == 0
  assert load['loaded_rows'] == 1 and load['db'] == 'demo' and load['table'] == 'users'
  assert 'Authorization' not in load['headers'] and load['headers']['label'] == 'rec'
  assert [(e['node'], e['had_authorization']) for e in srv.request_log] == [
      ('fe0', True), ('be0', True)]


def test_data_survives_restart(make_stream_load_server, tmp_path):
  data_dir = str(tmp_path / 'keep')
  srv = make_stream_load_server(data_dir=data_dir)
  stream_load(srv, 'demo', 'users', ndjson([{'id': 7}]), dict(JSON_LINES, label='keep'))
  srv.stop()
  srv2 = make_stream_load_server(data_dir=data_dir)
  assert srv2.query('SELECT id FROM demo.users') == [(7,)]
  again = stream_load(srv2, 'demo', 'users', ndjson([{'id': 8}]), dict(JSON_LINES,
                                                                        label='keep'))
  assert again['Status'] == 'Label Already Exists'


def test_curl_location_trusted(stream_load_server, tmp_path):
  import subprocess  # pylint: disable=import-outside-toplevel
  path = tmp_path / 'users.json'
  path.write_bytes(ndjson([{'id': 1, 'name': 'c'}, {'id': 2, 'name': 'd'}]))
  out = subprocess.run(
      ['curl', '-sS', '--location-trusted', '-u', 'root:secret', '-H', 'label:curl_1', '-H',
       'format:json', '-H', 'read_json_by_line:true', '-T', str(path),
       stream_load_server.fe_url + '/api/demo/users/_stream_load'],
      capture_output=True, check=True, timeout=30)
  res = json.loads(out.stdout)
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2
  assert stream_load_server.query('SELECT count(*) FROM demo.users') == [(2,)]


def test_schema_endpoint_reports_columns_and_key_model(stream_load_server):
  """Doris's TableSchemaAction: ``GET /api/{db}/{tbl}/_schema``."""
  import requests  # pylint: disable=import-outside-toplevel
  url = stream_load_server.fe_url + '/api/demo/%s/_schema'
  users = requests.get(url % 'users', auth=('root', 'secret')).json()
  assert users['code'] == 0 and users['data']['keysType'] == 'UNIQUE_KEYS'
  assert [c['name'] for c in users['data']['properties']][:2] == ['id', 'name']
  assert requests.get(url % 'events', auth=('root', 'secret')).json()['data']['keysType'] == (
      'DUP_KEYS')
  missing = requests.get(url % 'nosuch', auth=('root', 'secret')).json()
  assert missing['code'] == 1 and 'does not exist' in missing['data']
  assert requests.get(url % 'users', auth=('root', 'wrong')).json()['code'] == 401
