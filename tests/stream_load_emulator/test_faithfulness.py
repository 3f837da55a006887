"""The local server must behave like Doris where the crash tests depend on it.

A client that dies in the middle of sending a load body (a SIGKILLed pipeline) resets its
connection; Doris aborts that load's transaction (at the latest when its ``timeout`` passes) and
the label can be used again.  If the server kept the transaction open forever, a restarted
pipeline could never re-send that batch.
"""

import base64
import socket
import struct

from tests.pipelines.crash import wait_for
import pytest

pytestmark = pytest.mark.transform


def _reset_mid_body(server, label):
  """Sends a load's headers and half its body to the BE, then resets the connection (RST)."""
  host, port = server.be_urls[0].split('//', 1)[1].rsplit(':', 1)
  body = b'{"event_id": 1}\n' * 50000
  auth = base64.b64encode(f'{server.user}:{server.password}'.encode()).decode()
  head = (f'PUT /api/demo/events/_stream_load HTTP/1.1\r\nHost: {host}:{port}\r\n'
          f'Authorization: Basic {auth}\r\nlabel: {label}\r\nformat: json\r\n'
          f'read_json_by_line: true\r\nContent-Length: {len(body)}\r\n\r\n').encode()
  with socket.create_connection((host, int(port))) as sock:
    sock.sendall(head + body[:len(body) // 2])
    wait_for(lambda: server.txns.running_count('demo') == 1, 'the load to start')
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))


def test_a_load_whose_client_resets_mid_body_is_aborted_and_frees_its_label(stream_load_server):
  server = stream_load_server
  _reset_mid_body(server, 'reset-client-1')
  wait_for(lambda: server.txns.running_count('demo') == 0,
           'the reset load\'s transaction to be aborted', timeout_secs=5)
  assert server.txns.state('demo', 'reset-client-1') in ('ABORTED', 'UNKNOWN')
