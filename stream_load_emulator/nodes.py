"""Listening sockets of the emulated FE and BE nodes: start, stop (node down), TLS.

Each node is a ``ThreadingHTTPServer`` (one thread per connection, keep-alive) on its own
port. Taking a node down closes its listening socket, so clients get "connection refused",
and drops its open connections; bringing it up binds the same port again.
"""

import http.server
import socket
import ssl
import threading
from typing import Optional

from stream_load_emulator import handlers


class _NodeHTTPServer(http.server.ThreadingHTTPServer):
  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 256

  def __init__(self, address, app, role, index, ssl_context, base_url_fn):
    self.app = app
    self.role = role
    self.index = index
    self.ssl_context = ssl_context
    self._base_url_fn = base_url_fn
    self.connections = set()
    self.connections_lock = threading.Lock()
    super().__init__(address, handlers.NodeHandler)

  @property
  def base_url(self) -> str:
    return self._base_url_fn()

  def get_request(self):
    sock, addr = super().get_request()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if self.ssl_context is not None:
      # Handshake in the connection's thread, not in the accept loop.
      sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                          do_handshake_on_connect=False)
    with self.connections_lock:
      self.connections.add(sock)
    return sock, addr

  def shutdown_request(self, request):
    with self.connections_lock:
      self.connections.discard(request)
    super().shutdown_request(request)

  def handle_error(self, request, client_address):
    del request, client_address  # A client that vanished is not the server's problem.

  def drop_connections(self, keep=None) -> None:
    with self.connections_lock:
      conns = [c for c in self.connections if c is not keep]
    for sock in conns:
      try:
        sock.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass


class Node:
  """One FE or BE: a port, a role and an index, possibly down."""

  def __init__(self, app, role: str, index: int, host: str, port: int,
               ssl_context: Optional[ssl.SSLContext]):
    self.app = app
    self.role = role
    self.index = index
    self.host = host
    self.port = port
    self.ssl_context = ssl_context
    self._server: Optional[_NodeHTTPServer] = None
    self._thread: Optional[threading.Thread] = None
    self._lock = threading.Lock()

  @property
  def scheme(self) -> str:
    return 'https' if self.ssl_context is not None else 'http'

  @property
  def url(self) -> str:
    return '%s://%s:%d' % (self.scheme, self.host, self.port)

  @property
  def name(self) -> str:
    return '%s%d' % (self.role, self.index)

  @property
  def running(self) -> bool:
    return self._server is not None

  def start(self) -> None:
    with self._lock:
      if self._server is not None:
        return
      server = _NodeHTTPServer((self.host, self.port), self.app, self.role, self.index,
                               self.ssl_context, lambda: self.url)
      self.port = server.server_address[1]
      self._server = server
      self._thread = threading.Thread(target=server.serve_forever, kwargs={
          'poll_interval': 0.05}, name='stream-load-%s' % self.name, daemon=True)
      self._thread.start()

  def stop(self, keep=None) -> None:
    """Closes the listening socket and drops open connections (except ``keep``)."""
    with self._lock:
      server, self._server = self._server, None
      if server is None:
        return
      server.shutdown()
      server.server_close()
      server.drop_connections(keep)
      self._thread.join(timeout=5)
