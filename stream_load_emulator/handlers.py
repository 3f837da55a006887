"""HTTP request handlers of the emulated FE and BE nodes.

FE (``fe/fe-core/.../httpv2/rest/LoadAction.java`` and
https://doris.apache.org/docs/admin-manual/open-api/fe-http/):
``PUT /api/{db}/{table}/_stream_load`` checks Basic auth (errors are HTTP 200 with
``{"msg": "Unauthorized", "code": 401, ...}``), requires an ``Expect`` header, and answers
**307** to a BE with ``user:password@`` in the ``Location`` without reading the body (Doris
>= 3.1.3); ``PUT /api/{db}/_stream_load_2pc`` is redirected the same way;
``GET /api/{db}/get_load_state``, the table schema ``GET /api/{db}/{tbl}/_schema``, the BE list
``GET /api/backends[?is_alive=true]`` and the SQL API ``POST /api/query/default_cluster/{db}``
(https://doris.apache.org/docs/admin-manual/open-api/fe-http/query-api) answer on the FE.

BE (``be/src/http/action/stream_load.cpp``, ``stream_load_2pc.cpp``): always HTTP 200 with
the load JSON; ``100 Continue`` is sent only after the headers pass, as libevent does for
Doris; ``GET /api/_load_error_log?file=`` serves the rejected rows.

StarRocks flavour (https://docs.starrocks.io/docs/loading/StreamLoad/ and
https://docs.starrocks.io/docs/loading/Stream_Load_transaction_interface/):
``/api/transaction/begin|load|prepare|commit|rollback``.

Every node also serves ``/_emulator/faults`` (GET list, POST add, DELETE clear),
``/_emulator/loads``, ``/_emulator/group_commits`` (GET the merged commits) and
``POST /_emulator/group_commits/flush`` for tests that run the server in a subprocess.
"""

import base64
import binascii
import http.server
import json
import logging
import socket
import struct
import time
import urllib.parse
import zlib
from typing import Any, Dict, Iterator, Optional

from stream_load_emulator import faults as faults_lib
from stream_load_emulator import formats
from stream_load_emulator import load as load_lib
from stream_load_emulator import schema as schema_lib
from stream_load_emulator import txn as txn_lib

_LOGGER = logging.getLogger(__name__)
READ_CHUNK_BYTES = 1 << 20
DRAIN_SECS = 30.0


class ClientGone(Exception):
  """The client closed the connection before sending the whole body."""


def iter_body(rfile, length: Optional[int], chunked: bool) -> Iterator[bytes]:
  """Yields the request body from ``rfile`` (Content-Length or chunked encoding)."""
  if chunked:
    while True:
      line = rfile.readline(65537)
      if not line:
        raise ClientGone('connection closed in chunked body')
      try:
        size = int(line.split(b';', 1)[0].strip(), 16)
      except ValueError as e:
        raise ClientGone('bad chunk size line %r' % line[:40]) from e
      if size == 0:
        while rfile.readline(65537) not in (b'\r\n', b'\n', b''):
          pass
        return
      while size:
        data = rfile.read(min(READ_CHUNK_BYTES, size))
        if not data:
          raise ClientGone('connection closed mid-chunk')
        size -= len(data)
        yield data
      rfile.readline(3)
  else:
    remaining = length or 0
    while remaining > 0:
      data = rfile.read(min(READ_CHUNK_BYTES, remaining))
      if not data:
        raise ClientGone('connection closed after %d of %d body bytes'
                         % (length - remaining, length))
      remaining -= len(data)
      yield data


class _Inflater:
  """Streaming gzip (multi-member) decompression."""

  def __init__(self):
    self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)

  def feed(self, data: bytes) -> bytes:
    out = [self._d.decompress(data)]
    while self._d.eof and self._d.unused_data:
      rest = self._d.unused_data
      self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
      out.append(self._d.decompress(rest))
    return b''.join(out)

  def finish(self) -> bytes:
    tail = self._d.flush()
    if not self._d.eof:
      raise zlib.error('incomplete or truncated gzip stream')
    return tail


class _LineCounter:
  """Count-only mode: counts rows by delimiter without parsing (fast path, no copies)."""

  def __init__(self, delimiter: bytes):
    self.delim = delimiter
    self.count = 0
    self.last = b''

  def feed(self, data: bytes) -> None:
    if data:
      self.count += data.count(self.delim)
      self.last = data[-len(self.delim):]

  def total(self, skip: int) -> int:
    n = self.count + (1 if self.last and self.last != self.delim else 0)
    return max(n - skip, 0)


def _pretty(obj: Dict[str, Any]) -> bytes:
  return json.dumps(obj, indent=4, ensure_ascii=False).encode()


def _fe_result(msg: str, code: int, data: Any) -> Dict[str, Any]:
  """Doris FE ``ResponseEntityBuilder`` body."""
  return {'msg': msg, 'code': code, 'data': data, 'count': 0}


class NodeHandler(http.server.BaseHTTPRequestHandler):
  """One HTTP connection to a FE or BE node; ``self.server`` carries role, index and app."""

  protocol_version = 'HTTP/1.1'
  server_version = 'Doris-Emulator'
  sys_version = ''

  def version_string(self):
    return self.server_version
  timeout = 300

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # The emulator keeps its own request_log.

  def handle_expect_100(self):
    # Decide per route: the FE never sends 100 (it answers 307 at once), the BE only after
    # the headers pass (Doris's libevent header callback).
    return True

  def handle(self):
    try:
      super().handle()
    except (ConnectionError, socket.timeout, OSError):
      self.close_connection = True

  # --- plumbing -----------------------------------------------------------------------------

  @property
  def app(self):
    return self.server.app

  @property
  def role(self) -> str:
    return self.server.role

  @property
  def index(self) -> int:
    return self.server.index

  def server_running(self) -> bool:
    return self.app.node(self.role, self.index).running

  @property
  def node_name(self) -> str:
    return '%s%d' % (self.role, self.index)

  def do_GET(self):  # pylint: disable=invalid-name
    self._dispatch('GET')

  def do_PUT(self):  # pylint: disable=invalid-name
    self._dispatch('PUT')

  def do_POST(self):  # pylint: disable=invalid-name
    self._dispatch('POST')

  def do_DELETE(self):  # pylint: disable=invalid-name
    self._dispatch('DELETE')

  def _send(self, status: int, body: bytes, content_type: str = 'application/json',
            headers: Optional[Dict[str, str]] = None, close: bool = False) -> None:
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(len(body)))
    for k, v in (headers or {}).items():
      self.send_header(k, v)
    if close:
      self.send_header('Connection', 'close')
      self.close_connection = True
    self.end_headers()
    self.wfile.write(body)
    self.wfile.flush()

  def _send_json(self, obj: Any, status: int = 200, close: bool = False) -> None:
    self._send(status, json.dumps(obj, ensure_ascii=False).encode(), close=close)

  def _has_body(self) -> bool:
    te = self.headers.get('Transfer-Encoding', '').lower()
    return 'chunked' in te or int(self.headers.get('Content-Length') or 0) > 0

  def _drain_unread_body(self) -> None:
    """After answering without reading the body: swallow what the client still sends.

    Closing a socket with unread input makes the kernel send RST, and a client still
    writing its body would see "connection reset" instead of our answer. Like a web
    server's lingering close, read and drop the rest (bounded in time), then close.
    """
    self.close_connection = True
    if not self._has_body():
      return
    try:
      self.wfile.flush()
      if not hasattr(self.connection, 'cipher'):
        self.connection.shutdown(socket.SHUT_WR)
      self.connection.settimeout(2.0)
      deadline = time.monotonic() + DRAIN_SECS
      while time.monotonic() < deadline:
        if not self.rfile.read1(READ_CHUNK_BYTES):
          break
    except (OSError, ValueError):
      pass

  def _reset_connection(self) -> None:
    """Closes the socket with RST (SO_LINGER 0), as a crashed peer would."""
    self.close_connection = True
    try:
      self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
      self.connection.close()
    except OSError:
      pass

  def _auth(self):
    """Returns ``(user, None)`` if Basic auth is valid, else ``(user_or_None, reason)``."""
    header = self.headers.get('Authorization', '')
    if not header.lower().startswith('basic '):
      return None, 'missing'
    try:
      user, _, password = base64.b64decode(header[6:].strip()).decode().partition(':')
    except (binascii.Error, UnicodeDecodeError, ValueError):
      return None, 'missing'
    if not self.app.check_password(user, password):
      return user, 'denied'
    return user, None

  def _access_denied(self, user: Optional[str]) -> str:
    return 'Access denied for user \'%s@%s\' (using password: YES)' % (
        user, self.client_address[0])

  def _dispatch(self, method: str) -> None:
    parsed = urllib.parse.urlsplit(self.path)
    path = parsed.path
    query = urllib.parse.parse_qs(parsed.query)
    self.app.log_request(method, path, self.node_name, 'Authorization' in self.headers)
    parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
    try:
      if parts[:1] == ['_emulator']:
        return self._admin(method, parts[1:], query)
      if parts[:2] == ['api', 'health'] and method == 'GET':
        return self._send_json(_fe_result('success', 0, {
            'online_backend_num': len(self.app.be_urls), 'total_backend_num':
                len(self.app.be_urls)}))
      if self.role == 'fe':
        return self._fe_route(method, parts, query, parsed.query)
      return self._be_route(method, parts, query)
    except (ConnectionError, socket.timeout):
      self.close_connection = True
      return None

  def _not_found(self):
    self._send(404, b'{"msg":"Not Found","code":404,"data":null,"count":0}', close=True)
    self._drain_unread_body()

  def _read_small_body(self, limit: int = 16 * 1024 * 1024) -> bytes:
    chunked = 'chunked' in self.headers.get('Transfer-Encoding', '').lower()
    length = int(self.headers.get('Content-Length') or 0)
    if length > limit:
      raise ClientGone('body too large')
    return b''.join(iter_body(self.rfile, length, chunked))

  # --- admin --------------------------------------------------------------------------------

  def _admin(self, method: str, parts, query=None):
    if parts == ['faults']:
      if method == 'GET':
        return self._send_json([f.to_dict() for f in self.app.faults.list()])
      if method == 'DELETE':
        self._read_small_body()
        self.app.faults.clear()
        self.app.sync_nodes(keep=self.connection)
        return self._send_json({'ok': True})
      if method in ('POST', 'PUT'):
        try:
          spec = json.loads(self._read_small_body() or b'{}')
          self.app.faults.add(spec.pop('kind'), **spec)
        except (ValueError, KeyError, TypeError) as e:
          return self._send_json({'ok': False, 'error': str(e)}, status=400)
        # This node may have just gone down: answer on this connection, then close it.
        self.app.sync_nodes(keep=self.connection)
        return self._send_json({'ok': True}, close=not self.server_running())
    if parts == ['loads'] and method == 'GET':
      since = int((query or {}).get('since', ['0'])[0])  # loads[since:], to poll cheaply
      return self._send(200, json.dumps(self.app.loads[since:], default=str).encode())
    if parts == ['group_commits'] and method == 'GET':
      return self._send(200, json.dumps(self.app.group_commits, default=str).encode())
    if parts == ['group_commits', 'flush'] and method in ('POST', 'PUT'):
      self._read_small_body()
      return self._send_json({'ok': True, 'flushed': self.app.flush_group_commits()})
    return self._not_found()

  # --- FE -----------------------------------------------------------------------------------

  def _fe_route(self, method, parts, query, raw_query):
    if len(parts) == 4 and parts[0] == 'api' and parts[3] == '_stream_load' and method == 'PUT':
      return self._fe_redirect_load(parts[1], parts[2], raw_query)
    if len(parts) == 3 and parts[0] == 'api' and parts[2] == '_stream_load_2pc' and (
        method == 'PUT'):
      return self._fe_redirect_2pc(parts[1], raw_query)
    if len(parts) == 3 and parts[0] == 'api' and parts[2] == 'get_load_state' and (
        method == 'GET'):
      return self._fe_load_state(parts[1], query)
    if len(parts) == 4 and parts[:3] == ['api', 'query', 'default_cluster'] and (
        method == 'POST'):
      return self._fe_sql(parts[3])
    if len(parts) == 4 and parts[0] == 'api' and parts[3] == '_schema' and method == 'GET':
      return self._fe_schema(parts[1], parts[2])
    if parts == ['api', 'backends'] and method == 'GET':
      return self._fe_backends(query)
    if parts[:2] == ['api', 'transaction'] and len(parts) == 3 and (
        self.app.flavor == 'starrocks'):
      return self._sr_transaction(parts[2], method, raw_query)
    return self._not_found()

  def _fe_fault(self) -> bool:
    """FE-targeted faults (node named ``'feN'``); True when the request was answered."""
    fault = self.app.faults.take('slow', 'fe', self.index)
    if fault:
      time.sleep(fault.delay_secs or 2.0)
    for status in (500, 503):
      if self.app.faults.take('http_%d' % status, 'fe', self.index):
        self._send(status, b'{"msg":"injected fault","code":%d}' % status, close=True)
        self._drain_unread_body()
        return True
    return False

  def _fe_check_auth(self) -> bool:
    user, problem = self._auth()
    if problem is None:
      return True
    data = 'Need auth information.' if problem == 'missing' else self._access_denied(user)
    self._send(200, _pretty(_fe_result('Unauthorized', 401, data)), close=True)
    self._drain_unread_body()
    return False

  def _redirect_to_be(self, path_parts, raw_query):
    be = self.app.next_be()
    user, password = self.app.user, self.app.password
    netloc = '%s:%s@%s:%d' % (urllib.parse.quote(user, safe=''),
                              urllib.parse.quote(password, safe=''), be.host, be.port)
    path = '/' + '/'.join(urllib.parse.quote(p, safe='') for p in path_parts)
    location = urllib.parse.urlunsplit((be.scheme, netloc, path, raw_query, ''))
    # Jetty (Doris >= 3.1.3) closes a connection whose request body it did not read; one
    # without a body (a client asking where to send it) is answered and kept, as any HTTP/1.1
    # server keeps it.
    body = self._has_body()
    self._send(307, b'', content_type='text/plain', headers={'Location': location}, close=body)
    if body:
      self._drain_unread_body()

  def _fe_redirect_load(self, db, table, raw_query):
    if self._fe_fault() or not self._fe_check_auth():
      return
    if 'Expect' not in self.headers:
      self._send(200, _pretty({'status': 'FAILED', 'msg': 'There is no 100-continue header'}),
                 close=True)
      self._drain_unread_body()
      return
    self._redirect_to_be(['api', db, table, '_stream_load'], raw_query)

  def _fe_redirect_2pc(self, db, raw_query):
    held = self.app.faults.take('slow_2pc', 'fe', self.index)
    if held:
      time.sleep(held.delay_secs or faults_lib.DEFAULT_SLOW_SECS)
    if self._fe_fault() or not self._fe_check_auth():
      return
    msg = None
    if not self.headers.get('txn_id') and not self.headers.get('label'):
      msg = 'No transaction id selected.'
    elif not self.headers.get('txn_operation'):
      msg = 'No transaction operation(\'commit\' or \'abort\') selected.'
    if msg:
      self._send(200, _pretty({'status': 'FAILED', 'msg': msg}), close=True)
      self._drain_unread_body()
      return
    self._redirect_to_be(['api', db, '_stream_load_2pc'], raw_query)

  def _fe_load_state(self, db, query):
    if not self._fe_check_auth():
      return
    label = (query.get('label') or [''])[0]
    if not label:
      return self._send_json(_fe_result('Bad Request', 403, 'No label selected'))
    if db not in self.app.catalog.databases:
      return self._send_json(_fe_result('Error', 1, 'unknown database, database=%s' % db))
    state = self.app.txns.state(db, label)
    if self.app.flavor == 'starrocks':
      return self._send_json({'Status': 'OK', 'Message': '', 'Label': label, 'State': state,
                              'state': state})
    return self._send_json(_fe_result('success', 0, state))

  def _fe_backends(self, query):
    """Doris's ``BackendsAction``: every BE's host and HTTP port; ``is_alive=true`` leaves
    out the BEs that are down (a ``be_down`` fault)."""
    if not self._fe_check_auth():
      return
    alive_only = (query.get('is_alive') or [''])[0].lower() == 'true'
    backends = []
    for index in range(len(self.app.be_urls)):
      be = self.app.node('be', index)
      if be.running or not alive_only:
        backends.append({'ip': be.host, 'http_port': be.port, 'is_alive': be.running})
    return self._send_json(_fe_result('success', 0, {'backends': backends}))

  def _fe_schema(self, db, tbl):
    """Doris's ``TableSchemaAction``: columns and ``keysType`` of one table."""
    if not self._fe_check_auth():
      return
    table = self.app.catalog.table(db, tbl)
    if table is None:
      return self._send_json(_fe_result(
          'Error', 1, 'Table [%s] does not exist in database [%s]' % (tbl, db)))
    properties = [{'type': c.type_name, 'name': c.name, 'comment': '',
                   'aggregation_type': c.aggregation or '', 'isKey': 'true' if c.is_key else 'false'}
                  for c in table.columns]
    keys_type = {schema_lib.DUPLICATE: 'DUP_KEYS', schema_lib.UNIQUE: 'UNIQUE_KEYS',
                 schema_lib.AGGREGATE: 'AGG_KEYS', schema_lib.PRIMARY: 'PRIMARY_KEYS'}[
                     table.keys_type]
    return self._send_json(_fe_result('success', 0, {'properties': properties,
                                                     'keysType': keys_type, 'status': 200}))

  def _fe_sql(self, db):
    if not self._fe_check_auth():
      return
    try:
      stmt = json.loads(self._read_small_body() or b'{}').get('stmt', '')
    except (ValueError, AttributeError):
      return self._send_json(_fe_result('Error', 1, 'malformed json, expected {"stmt": ...}'))
    start = time.monotonic()
    try:
      names, rows, types = self.app.sql(stmt, db)
    except Exception as e:  # pylint: disable=broad-except
      return self._send_json(_fe_result('Error', 1, 'errCode = 2, detailMessage = %s' % e))
    elapsed = int((time.monotonic() - start) * 1000)
    if names:
      data = {'type': 'result_set',
              'meta': [{'name': n, 'type': t} for n, t in zip(names, types)],
              'data': [[_json_value(v) for v in r] for r in rows], 'time': elapsed}
    else:
      data = {'type': 'exec_status', 'status': {}, 'time': elapsed}
    return self._send_json(_fe_result('success', 0, data))

  # --- BE -----------------------------------------------------------------------------------

  def _be_route(self, method, parts, query):
    if len(parts) == 4 and parts[0] == 'api' and parts[3] == '_stream_load' and method == 'PUT':
      return self._be_stream_load(parts[1], parts[2])
    if len(parts) == 3 and parts[0] == 'api' and parts[2] == '_stream_load_2pc' and (
        method == 'PUT'):
      return self._be_2pc(parts[1])
    if parts == ['api', '_load_error_log'] and method == 'GET':
      name = (query.get('file') or [''])[0]
      text = self.app.loader.error_logs.get(name)
      if text is None:
        return self._send(404, b'file not exist', content_type='text/plain')
      return self._send(200, text.encode(), content_type='text/plain; charset=utf-8')
    if parts == ['api', 'transaction', 'load'] and self.app.flavor == 'starrocks':
      return self._be_stream_load(None, None, starrocks_txn=True)
    return self._not_found()

  def _be_http_fault(self, db, table) -> bool:
    fault = self.app.faults.take('slow', 'be', self.index, db, table)
    if fault:
      time.sleep(fault.delay_secs if fault.delay_secs is not None else 2.0)
    for status in (500, 503):
      if self.app.faults.take('http_%d' % status, 'be', self.index, db, table):
        self.app.record_load(None, db, table, 'HTTP %d' % status, self._public_headers(),
                             self.index)
        self._send(status, b'<html><body>injected HTTP %d</body></html>' % status,
                   content_type='text/html', close=True)
        self._drain_unread_body()
        return True
    return False

  def _public_headers(self) -> Dict[str, str]:
    return {k: v for k, v in self.headers.items() if k.lower() != 'authorization'}

  def _be_stream_load(self, db, table, starrocks_txn=False):
    app = self.app
    h = load_lib.Headers(self.headers.items())
    if starrocks_txn:
      db, table = h.get('db'), h.get('table')
    if self._be_http_fault(db, table):
      return
    ctx = load_lib.LoadContext(db=db, table=table)
    length_header = self.headers.get('Content-Length')
    length = int(length_header) if length_header and length_header.isdigit() else None
    chunked = 'chunked' in self.headers.get('Transfer-Encoding', '').lower()
    slots = app.be_slots[self.index]
    if slots is not None:
      slots.acquire()
    ctx.slot_start = time.monotonic()
    try:
      self._be_load_body(ctx, h, length, chunked, starrocks_txn)
    finally:
      if slots is not None:
        slots.release()

  def _be_load_body(self, ctx, h, length, chunked, starrocks_txn):
    app = self.app
    loader = app.loader
    try:
      user, problem = self._auth()
      if problem == 'missing':
        raise load_lib.LoadFailed('INTERNAL_ERROR', 'no valid Basic authorization')
      if problem == 'denied':
        raise load_lib.LoadFailed('ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = '
                                  + self._access_denied(user))
      if starrocks_txn:
        return self._sr_load(ctx, h, length, chunked)
      if app.faults.take('txn_limit', 'be', self.index, ctx.db, ctx.table):
        raise load_lib.LoadFailed(
            'ANALYSIS_ERROR', 'TStatus: errCode = 2, detailMessage = current running txns on '
            'db %d is %d, larger than limit %d' % (app.db_id(ctx.db), app.max_running_txn,
                                                   app.max_running_txn))
      loader.on_header(ctx, h, length, chunked)
    except load_lib.LoadFailed as e:
      ctx.fail(e.code, e.msg)
      loader.abort(ctx, e.msg)
      return self._be_reply(ctx, h, read_body=False)
    except Exception as e:  # pylint: disable=broad-except
      # An emulator bug must not leave the label RUNNING or the client without an answer.
      _LOGGER.exception('load %s failed on its headers', ctx.label)
      ctx.fail('INTERNAL_ERROR', 'emulator error: %r' % e)
      loader.abort(ctx, ctx.message)
      return self._be_reply(ctx, h, read_body=False)
    if self.headers.get('Expect', '').lower() == '100-continue':
      self.send_response_only(100)
      self.end_headers()
      self.wfile.flush()
    reset = app.faults.take('reset_mid_body', 'be', self.index, ctx.db, ctx.table)
    try:
      body, counted = self._read_load_body(ctx, h, length, chunked, reset)
    except (ClientGone, OSError) as e:
      # EOF, or a reset (ConnectionResetError): the client is gone either way;
      # abort so the label is free again, as Doris does when the load dies.
      loader.abort(ctx, 'client gone: %s' % e)
      app.record_load(ctx, ctx.db, ctx.table, 'Reset' if reset else 'Client Gone',
                      self._public_headers(), self.index)
      self._reset_connection()
      return None
    except zlib.error as e:
      ctx.fail('INTERNAL_ERROR', 'Failed to decompress gzip data: %s' % e)
      loader.abort(ctx, ctx.message)
      return self._be_reply(ctx, h, read_body=True)
    # Faults after the commit: the whole body is in; the load will commit, the answer is lost.
    lost = None
    for kind in faults_lib.AFTER_COMMIT_KINDS:
      if app.faults.take(kind, 'be', self.index, ctx.db, ctx.table):
        lost = kind
        break
    try:
      if app.faults.take('too_many_versions', 'be', self.index, ctx.db, ctx.table):
        raise load_lib.LoadFailed(
            'E-235', 'failed to init rowset builder. version count: 2001, exceed limit: 2000, '
            'tablet: %d. Please reduce the frequency of loading data or adjust the '
            'max_tablet_version_num or time_series_max_tablet_version_num in be.conf to a '
            'larger value.' % (app.db_id(ctx.db) * 100 + 17))
      publish = app.faults.take('publish_timeout', 'be', self.index, ctx.db, ctx.table)
      loader.run(ctx, h, body, counted, self.server.base_url, publish_timeout=bool(publish))
      if publish and ctx.txn is not None:
        app.make_visible_later(ctx.txn, publish.delay_secs)
    except load_lib.LoadFailed as e:
      ctx.fail(e.code, e.msg)
      loader.abort(ctx, e.msg)
    except Exception as e:  # pylint: disable=broad-except
      _LOGGER.exception('load %s failed', ctx.label)
      ctx.fail('INTERNAL_ERROR', 'emulator error: %r' % e)
      loader.abort(ctx, ctx.message)
    if lost is not None:
      return self._lose_reply(ctx, lost)
    return self._be_reply(ctx, h, read_body=True)

  def _lose_reply(self, ctx, kind: str) -> None:
    """``response_lost`` / ``reset_after_body``: the load is done (committed, unless it
    failed on its own), but the client gets no answer: a clean close (FIN) or a reset."""
    ctx.load_ms = int((time.monotonic() - ctx.start) * 1000)
    body = ctx.to_json(self.app.flavor)
    status = 'Response Lost' if kind == 'response_lost' else 'Reset After Body'
    self.app.record_load(ctx, ctx.db, ctx.table, status, self._public_headers(), self.index,
                         response=json.loads(body))
    if kind == 'reset_after_body':
      self._reset_connection()
      return
    self.close_connection = True
    try:
      self.wfile.flush()
      self.connection.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
      pass
    try:
      self.connection.close()
    except OSError:
      pass

  def _read_load_body(self, ctx, h, length, chunked, reset):
    """Reads (and un-gzips) the body; returns ``(bytes or None, counted rows)``."""
    start = time.monotonic()
    # Doris: ``compress_type: gz``; StarRocks (3.2.7+): ``compression: gzip`` or
    # ``Content-Encoding: gzip`` (it does not read compress_type).
    if self.app.flavor == 'starrocks':
      gz = 'gzip' in (h.get('compression').lower(), h.get('content-encoding').lower())
    else:
      gz = h.get('compress_type').lower() in ('gz', 'gzip')
    inflater = _Inflater() if gz else None
    counter = None
    fmt = load_lib.Loader.format_of(h, self.app.flavor)
    if self.app.count_only:
      delimiter = h.get('line_delimiter' if self.app.flavor == 'doris' else 'row_delimiter')
      counter = _LineCounter(b'\n' if fmt == 'json' else
                             formats.separator_bytes(delimiter, b'\n'))
      if fmt == 'arrow' or (fmt == 'json' and not h.flag('read_json_by_line')):
        counter = None  # a JSON document or array / an Arrow stream: parse it once below
    chunks = []
    received = 0
    limit = None
    if reset is not None:
      limit = max(1, (length or 65536) // 2)
    for data in iter_body(self.rfile, length, chunked):
      received += len(data)
      if limit is not None and received >= limit:
        raise ClientGone('injected reset after %d bytes' % received)
      if inflater is not None:
        data = inflater.feed(data)
      if counter is not None:
        counter.feed(data)
      else:
        chunks.append(data)
    if limit is not None:
      raise ClientGone('injected reset')
    if inflater is not None:
      tail = inflater.finish()
      if counter is not None:
        counter.feed(tail)
      else:
        chunks.append(tail)
    ctx.receive_bytes = received
    ctx.read_ms = int((time.monotonic() - start) * 1000)
    if counter is not None:
      return None, counter.total(load_lib.skip_lines(h, self.app.flavor))
    body = b''.join(chunks)
    if self.app.count_only:  # JSON document or Arrow stream in count-only mode
      if fmt == 'arrow':
        return None, formats.count_arrow_rows(body)
      return None, formats.count_rows(body, 'json', False, '\n', 0)
    return body, 0

  def _be_reply(self, ctx, h, read_body: bool):
    ctx.load_ms = int((time.monotonic() - ctx.start) * 1000)
    cost = self.app.cost_model
    if cost is not None and ctx.ok:
      # The modelled time runs while the load holds its BE slot.
      remaining = cost.load_secs(ctx.receive_bytes) - (time.monotonic() - ctx.slot_start)
      if remaining > 0:
        time.sleep(remaining)
      ctx.load_ms = int((time.monotonic() - ctx.start) * 1000)
    body = ctx.to_json(self.app.flavor)
    # Record first: a client that got its answer must find the load in ``loads``.
    self.app.record_load(ctx, ctx.db, ctx.table, ctx.status, self._public_headers(),
                         self.index, response=json.loads(body))
    self._send(200, body, content_type='text/plain; charset=UTF-8', close=not read_body)
    if not read_body:
      self._drain_unread_body()

  def _be_2pc(self, db):
    h = load_lib.Headers(self.headers.items())
    self._read_small_body()
    label, txn_text, op = h.get('label'), h.get('txn_id'), h.get('txn_operation')
    msg = ''
    if label:
      msg += 'label [%s] ' % label
    txn_id = None
    if txn_text:
      msg += 'transaction [%s] ' % txn_text
      try:
        txn_id = int(txn_text)
      except ValueError:
        return self._send(200, _pretty({'status': 'INTERNAL_ERROR', 'msg': (
            'convert txn_id [%s] failed, reason=stoull' % txn_text)}))
    msg += op + ' successfully.'
    if op not in ('commit', 'abort'):
      return self._send(200, _pretty({'status': 'INTERNAL_ERROR', 'msg': (
          'transaction operation should be \'commit\' or \'abort\'')}))
    user, problem = self._auth()
    if problem is not None:
      reason = ('no valid Basic authorization' if problem == 'missing' else
                'TStatus: errCode = 2, detailMessage = ' + self._access_denied(user))
      return self._send(200, _pretty({'status': 'INTERNAL_ERROR' if problem == 'missing' else
                                      'ANALYSIS_ERROR', 'msg': reason}))
    try:
      self.app.txns.operate_2pc(db, op, txn_id=txn_id, label=None if txn_id else label)
    except txn_lib.TxnError as e:
      return self._send(200, _pretty({'status': e.code, 'msg': e.detail}))
    return self._send(200, _pretty({'status': 'Success', 'msg': msg}))

  # --- StarRocks transaction interface -------------------------------------------------------

  def _sr_transaction(self, op, method, raw_query):
    if op == 'load':
      if not self._fe_check_auth():
        return None
      return self._redirect_to_be(['api', 'transaction', 'load'], raw_query)
    if op not in ('begin', 'prepare', 'commit', 'rollback') or method not in ('POST', 'PUT'):
      return self._not_found()
    self._read_small_body()
    user, problem = self._auth()
    h = load_lib.Headers(self.headers.items())
    label, db, table = h.get('label'), h.get('db'), h.get('table')
    if problem is not None:
      return self._send_json({'Status': 'FAILED', 'Message': self._access_denied(user)
                              if problem == 'denied' else 'no valid Basic authorization'})
    if not label:
      return self._send_json({'Status': 'FAILED', 'Message': 'empty label'})
    if not db:
      return self._send_json({'Status': 'FAILED', 'Message': 'No database selected.'})
    result = self.app.starrocks.operate(op, db, table, label, h)
    return self._send_json(result)

  def _sr_load(self, ctx, h, length, chunked):
    """``PUT /api/transaction/load``: one more body into an open StarRocks transaction."""
    try:
      body, counted = self._read_load_body(ctx, h, length, chunked, None)
    except ClientGone:
      self._reset_connection()
      return None
    except zlib.error as e:
      return self._send_json({'TxnId': -1, 'Label': h.get('label'), 'Status': 'FAILED',
                              'Message': 'bad gzip data: %s' % e})
    result = self.app.starrocks.load(h, body, counted, ctx.receive_bytes, ctx.read_ms,
                                     self.server.base_url)
    self._send_json(result)
    return None


def _json_value(value):
  if isinstance(value, (int, float, str)) or value is None:
    return value
  return str(value)
