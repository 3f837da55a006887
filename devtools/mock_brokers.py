"""Brokers of librdkafka's mock cluster that can be taken down and brought back (a restart).

``confluent_kafka`` starts a mock cluster inside a client (``test.mock.num.brokers``) but does not
expose librdkafka's mock API.  ``MockBrokers`` makes the cluster through that C API instead
(ctypes, the same librdkafka the ``confluent_kafka`` wheel ships), so that a soak can restart a
broker while a job runs: ``down(broker_id)`` closes the broker's connections and refuses new
ones (its partitions keep their leader, as a restarted broker's do), ``up(broker_id)`` takes
connections again.  Clients reach the cluster at ``bootstrap_servers`` like any Kafka.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from typing import Optional, Sequence

__all__ = ['MockBrokers', 'librdkafka_path']

_PRODUCER = 0  # rd_kafka_type_t
_ERRSTR_SIZE = 512


def librdkafka_path() -> Optional[str]:
  """The librdkafka the installed ``confluent_kafka`` uses (its wheel's copy, else the system's)."""
  import confluent_kafka  # pylint: disable=import-outside-toplevel
  package = os.path.dirname(os.path.abspath(confluent_kafka.__file__))
  bundled = sorted(glob.glob(os.path.join(package, os.pardir, 'confluent_kafka.libs',
                                          'librdkafka*.so*')))
  return bundled[0] if bundled else ctypes.util.find_library('rdkafka')


def _library(path: str) -> ctypes.CDLL:
  lib = ctypes.CDLL(path)
  lib.rd_kafka_conf_new.restype = ctypes.c_void_p
  lib.rd_kafka_conf_set.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_char_p, ctypes.c_size_t)
  lib.rd_kafka_conf_set.restype = ctypes.c_int
  lib.rd_kafka_conf_destroy.argtypes = (ctypes.c_void_p,)
  lib.rd_kafka_new.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
  lib.rd_kafka_new.restype = ctypes.c_void_p
  lib.rd_kafka_destroy.argtypes = (ctypes.c_void_p,)
  lib.rd_kafka_handle_mock_cluster.argtypes = (ctypes.c_void_p,)
  lib.rd_kafka_handle_mock_cluster.restype = ctypes.c_void_p
  lib.rd_kafka_mock_cluster_bootstraps.argtypes = (ctypes.c_void_p,)
  lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
  for name in ('rd_kafka_mock_broker_set_down', 'rd_kafka_mock_broker_set_up'):
    getattr(lib, name).argtypes = (ctypes.c_void_p, ctypes.c_int32)
    getattr(lib, name).restype = ctypes.c_int
  lib.rd_kafka_mock_push_request_errors_array.argtypes = (
      ctypes.c_void_p, ctypes.c_int16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int))
  lib.rd_kafka_mock_push_request_errors_array.restype = None
  return lib


class MockBrokers:
  """A mock cluster of ``num_brokers`` brokers (ids 1..n) whose brokers can be restarted.

  Raises:
    RuntimeError: no librdkafka with the mock API was found, or it refused to start.
  """

  def __init__(self, num_brokers: int):
    path = librdkafka_path()
    if path is None:
      raise RuntimeError('no librdkafka found to start a mock cluster with')
    try:
      lib = self._lib = _library(path)
    except (OSError, AttributeError) as error:
      raise RuntimeError(f'{path} has no mock cluster API ({error})') from None
    errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
    conf = lib.rd_kafka_conf_new()
    # log_level 3: errors only (not the notice that a mock cluster started)
    for name, value in (('test.mock.num.brokers', str(num_brokers)), ('log_level', '3')):
      if lib.rd_kafka_conf_set(conf, name.encode(), value.encode(), errstr, _ERRSTR_SIZE) != 0:
        lib.rd_kafka_conf_destroy(conf)
        raise RuntimeError(f'mock cluster: {errstr.value.decode()}')
    self._handle = lib.rd_kafka_new(_PRODUCER, conf, errstr, _ERRSTR_SIZE)  # takes conf
    if not self._handle:
      raise RuntimeError(f'mock cluster: {errstr.value.decode()}')
    self._cluster = lib.rd_kafka_handle_mock_cluster(self._handle)
    self.bootstrap_servers = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
    self.num_brokers = num_brokers

  def down(self, broker_id: int) -> None:
    """Closes the broker's connections and refuses new ones until ``up``."""
    self._check(self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker_id), broker_id)

  def up(self, broker_id: int) -> None:
    """Takes connections to the broker again."""
    self._check(self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker_id), broker_id)

  def fail_requests(self, api_key: int, errors: Sequence[int]) -> None:
    """The next ``len(errors)`` requests of ``api_key`` (a Kafka API key: 8 is OffsetCommit) are
    answered with these error codes, one each, whichever broker gets them."""
    codes = (ctypes.c_int * len(errors))(*errors)
    self._lib.rd_kafka_mock_push_request_errors_array(self._cluster, api_key, len(errors), codes)

  def close(self) -> None:
    """Stops the cluster (its clients lose it)."""
    if self._handle:
      self._lib.rd_kafka_destroy(self._handle)
      self._handle = self._cluster = None

  @staticmethod
  def _check(error: int, broker_id: int) -> None:
    if error != 0:
      raise RuntimeError(f'mock broker {broker_id}: librdkafka error {error}')
