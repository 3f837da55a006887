"""Faults after the commit: the load is stored, the answer never arrives.

Doris's answer to a retried label that is already visible is ``Label Already Exists`` with
``ExistingJobStatus`` ``FINISHED`` (``LabelAlreadyUsedException``, FE
``DatabaseTransactionMgr``); a retry with a fresh label loads the rows a second time.
"""

import base64
import socket

import pytest
import requests

from tests.stream_load_emulator.helpers import AUTH, ndjson, stream_load

pytestmark = pytest.mark.transform

JL = {'format': 'json', 'read_json_by_line': 'true'}
ROWS = ndjson([{'event_id': 1, 'event_type': 'a'}, {'event_id': 2, 'event_type': 'b'}])


def _count(srv):
  return srv.query('SELECT count(*) FROM demo.events')[0][0]


def _load_state(srv, label):
  return requests.get(srv.fe_url + '/api/demo/get_load_state', params={'label': label},
                      auth=AUTH).json()['data']


def _raw_put(srv, label, body=ROWS):
  """A Stream Load straight to the BE over a bare socket; returns what the BE sent back
  (b'' when it closed cleanly without a response)."""
  host, port = srv.be_urls[0][len('http://'):].split(':')
  auth = base64.b64encode(b'root:secret').decode()
  head = ('PUT /api/demo/events/_stream_load HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s'
          '\r\nConnection: close\r\nlabel: %s\r\nformat: json\r\nread_json_by_line: true'
          '\r\nContent-Length: %d\r\n\r\n' % (host, auth, label, len(body))).encode()
  with socket.create_connection((host, int(port)), timeout=30) as sock:
    sock.sendall(head + body)
    received = b''
    while True:
      data = sock.recv(65536)
      if not data:
        return received
      received += data


@pytest.mark.parametrize('kind, status', [('response_lost', 'Response Lost'),
                                          ('reset_after_body', 'Reset After Body')])
def test_committed_but_unanswered_then_label_retry_is_deduplicated(stream_load_server, kind,
                                                                   status):
  srv = stream_load_server
  srv.inject_fault(kind)
  with pytest.raises(requests.exceptions.ConnectionError):
    stream_load(srv, 'demo', 'events', ROWS, dict(JL, label='once'))
  # The load committed although the client never heard about it.
  assert _count(srv) == 2
  assert _load_state(srv, 'once') == 'VISIBLE'
  lost = srv.loads[-1]
  assert lost['status'] == status and lost['label'] == 'once'
  assert lost['response']['Status'] == 'Success'  # what the BE would have answered
  # A careful client retries with the same label: nothing is loaded twice.
  again = stream_load(srv, 'demo', 'events', ROWS, dict(JL, label='once'))
  assert again['Status'] == 'Label Already Exists'
  assert again['ExistingJobStatus'] == 'FINISHED'
  assert again['Message'].startswith('[LABEL_ALREADY_EXISTS]TStatus: errCode = 2, '
                                     'detailMessage = Label [once] has already been used')
  assert again['TxnId'] == -1
  assert _count(srv) == 2


@pytest.mark.parametrize('kind', ['response_lost', 'reset_after_body'])
def test_a_fresh_label_retry_duplicates_rows(stream_load_server, kind):
  # Shows the fault is real: a client that does not keep its label loads twice.
  srv = stream_load_server
  srv.inject_fault(kind)
  with pytest.raises(requests.exceptions.ConnectionError):
    stream_load(srv, 'demo', 'events', ROWS, dict(JL, label='first_try'))
  assert stream_load(srv, 'demo', 'events', ROWS, dict(JL, label='second_try'))[
      'Status'] == 'Success'
  assert srv.query('SELECT event_id, count(*) FROM demo.events GROUP BY event_id '
                   'ORDER BY event_id') == [(1, 2), (2, 2)]


def test_response_lost_closes_without_any_bytes(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('response_lost')
  assert _raw_put(srv, 'raw_lost') == b''  # FIN, not one byte of HTTP
  assert _count(srv) == 2
  # The fault was used up: the next load is answered.
  assert _raw_put(srv, 'raw_ok').startswith(b'HTTP/1.1 200')


def test_reset_after_body_resets(stream_load_server):
  srv = stream_load_server
  # Switched over the HTTP fault API, as a test running the server in a subprocess would.
  r = requests.post(srv.be_urls[0] + '/_emulator/faults', json={'kind': 'reset_after_body'})
  assert r.json() == {'ok': True}
  with pytest.raises(ConnectionResetError):
    _raw_put(srv, 'raw_reset')
  assert _count(srv) == 2
  assert _load_state(srv, 'raw_reset') == 'VISIBLE'


def test_after_commit_fault_targets_one_table(stream_load_server):
  srv = stream_load_server
  srv.inject_fault('response_lost', table='demo.users')
  assert stream_load(srv, 'demo', 'events', ROWS, JL)['Status'] == 'Success'
  with pytest.raises(requests.exceptions.ConnectionError):
    stream_load(srv, 'demo', 'users', ndjson([{'id': 1}]), JL)
  assert srv.query('SELECT count(*) FROM demo.users') == [(1,)]
