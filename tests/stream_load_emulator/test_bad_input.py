"""Bad input gets Doris's answer and the server keeps serving."""

import gzip
import http.client
import socket
import urllib.parse

import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load
import pytest

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}
GOOD = ndjson([{'id': 1}])


def _still_serves(srv):
  assert stream_load(srv, 'demo', 'users', GOOD, JL)['Status'] == 'Success'


def test_malformed_json_line_is_filtered(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'{"id": 1}\n{"id": 2,\n', JL)
  assert res['Status'] == 'Fail'
  assert res['Message'] == '[DATA_QUALITY_ERROR]too many filtered rows'
  assert (res['NumberTotalRows'], res['NumberFilteredRows']) == (2, 1)
  assert 'Parse json data for JsonDoc failed' in requests.get(res['ErrorURL']).text
  _still_serves(srv)


def test_malformed_json_document(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'{"id": 1', {'format': 'json'})
  assert res['Status'] == 'Fail' and res['NumberFilteredRows'] == 1
  _still_serves(srv)


def test_array_without_strip_outer_array(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'[{"id": 1}]', {'format': 'json'})
  assert res['Status'] == 'Fail'
  assert 'strip_outer_array' in requests.get(res['ErrorURL']).text


def test_unknown_table_and_database(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'nope', GOOD, JL)
  assert res['Status'] == 'Fail'
  assert res['Message'] == ('[ANALYSIS_ERROR]TStatus: errCode = 7, detailMessage = unknown '
                            'table, tableName=nope')
  assert res['TxnId'] == -1
  res = stream_load(srv, 'nodb', 'users', GOOD, JL)
  assert 'unknown databases, dbName=nodb' in res['Message']
  _still_serves(srv)


def test_wrong_password_on_be(stream_load_server):
  srv = stream_load_server
  r = requests.put(srv.be_urls[0] + '/api/demo/users/_stream_load', data=GOOD,
                   headers=dict(JL, Expect='100-continue'), auth=('root', 'bad'))
  assert r.status_code == 200
  assert r.json()['Status'] == 'Fail'
  assert 'Access denied for user' in r.json()['Message']
  _still_serves(srv)


def test_oversize_body(make_stream_load_server):
  srv = make_stream_load_server(max_body_bytes=1000)
  big = ndjson([{'id': i, 'name': 'n' * 20} for i in range(100)])
  res = stream_load(srv, 'demo', 'users', big, JL)
  assert res['Status'] == 'Fail'
  assert res['Message'] == '[INTERNAL_ERROR]body exceed max size: 1000, data: %d' % len(big)
  res = stream_load(srv, 'demo', 'users', b'[' + b','.join([b'{"id": 1}'] * 200) + b']',
                    {'format': 'json', 'strip_outer_array': 'true'})
  assert 'The size of this batch exceed the max size [1000]  of json type data' in (
      res['Message'])
  _still_serves(srv)


def test_bad_label(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', GOOD, dict(JL, label='bad label!'))
  assert res['Status'] == 'Fail'
  assert res['Message'] == ('[ANALYSIS_ERROR]TStatus: errCode = 2, detailMessage = Label '
                            'format error. regex: ^[-_A-Za-z0-9:]{1,128}$, label: bad label!')
  res = stream_load(srv, 'demo', 'users', GOOD, dict(JL, label='x' * 129))
  assert res['Status'] == 'Fail'
  _still_serves(srv)


def test_group_commit_with_label(stream_load_server):
  # Doris 2.1+ stream_load.cpp _can_group_commit: Status::InvalidArgument.
  res = stream_load(stream_load_server, 'demo', 'users', GOOD,
                    dict(JL, label='gc', group_commit='async_mode'))
  assert res['Message'] == ('[INVALID_ARGUMENT]label and group_commit can\'t be set at the '
                            'same time')


def test_gzip_that_is_not_gzip(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'not gzip at all\n', dict(JL, compress_type='gz'))
  assert res['Status'] == 'Fail'
  _still_serves(srv)
  truncated = gzip.compress(ndjson([{'id': i} for i in range(1000)]))[:200]
  assert stream_load(srv, 'demo', 'users', truncated, dict(JL, compress_type='gz'))[
      'Status'] == 'Fail'
  _still_serves(srv)


def test_be_sends_100_continue_only_after_headers_pass(stream_load_server):
  srv = stream_load_server
  port = int(srv.be_urls[0].rsplit(':', 1)[1])
  conn = socket.create_connection(('127.0.0.1', port), timeout=5)
  import base64  # pylint: disable=import-outside-toplevel
  token = base64.b64encode(b'root:secret').decode()
  conn.sendall(('PUT /api/demo/users/_stream_load HTTP/1.1\r\nHost: x\r\n'
                'Authorization: Basic %s\r\nExpect: 100-continue\r\nformat: json\r\n'
                'Content-Length: %d\r\n\r\n' % (token, len(GOOD))).encode())
  assert conn.recv(100).startswith(b'HTTP/1.1 100 Continue\r\n\r\n')
  conn.sendall(GOOD)
  data = b''
  while b'"CommitAndPublishTimeMs"' not in data:
    data += conn.recv(4096)
  assert b'"Status": "Success"' in data
  conn.close()


def test_fe_survives_client_streaming_body_into_redirect(stream_load_server):
  srv = stream_load_server
  big = ndjson([{'id': i, 'name': 'x' * 50} for i in range(100000)])  # ~6 MB
  r = requests.put(srv.fe_url + '/api/demo/users/_stream_load', data=big,
                   headers={'Expect': '100-continue'}, auth=AUTH, allow_redirects=False)
  assert r.status_code == 307

  def gen():
    for i in range(0, len(big), 65536):
      yield big[i:i + 65536]
  r = requests.put(srv.fe_url + '/api/demo/users/_stream_load', data=gen(),
                   headers={'Expect': '100-continue'}, auth=AUTH, allow_redirects=False)
  assert r.status_code == 307
  # http.client sending headers, then the body after the answer arrived.
  parsed = urllib.parse.urlsplit(srv.fe_url)
  conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
  conn.request('PUT', '/api/demo/users/_stream_load', body=big, headers={
      'Expect': '100-continue', 'Authorization': requests.auth._basic_auth_str(*AUTH)})
  assert conn.getresponse().status == 307
  conn.close()
  _still_serves(srv)


def test_unknown_path_404(stream_load_server):
  r = requests.get(stream_load_server.fe_url + '/nothing/here')
  assert r.status_code == 404
  _still_serves(stream_load_server)
