"""The loader's metrics: the Beam metrics namespace, and Prometheus (``--metrics_port``).

Beam metrics (namespace ``NAMESPACE``) are the runner's view, reported by every
runner.  The Prometheus metrics (seed 000's list) are for a Prometheus scraping
the worker: batch flush duration, Stream Load duration, the rows and bytes
waiting in each table's current batch, Kafka records consumed and lag, and rows
loaded / filtered / dead-lettered.  They live in the default registry of the
process that runs the DoFns.
"""

from __future__ import annotations

from typing import Optional

import prometheus_client as prom

__all__ = ['NAMESPACE', 'start_metrics_server', 'observe_load']

# The namespace of every Beam metric of the loader.
NAMESPACE = 'kafka_to_doris'

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

BATCH_FLUSH_SECONDS = prom.Histogram(
    'doris_batch_flush_duration_seconds', 'Time a batch waited before it was flushed',
    ['table', 'reason'], buckets=_BUCKETS)
STREAM_LOAD_SECONDS = prom.Histogram(
    'doris_stream_load_duration_seconds', 'Duration of one Stream Load, retries included',
    ['table'], buckets=_BUCKETS)
BATCH_CURRENT_ROWS = prom.Gauge('doris_batch_current_rows', 'Rows in the batch being built',
                                ['table'])
BATCH_CURRENT_BYTES = prom.Gauge('doris_batch_current_bytes', 'Bytes in the batch being built',
                                 ['table'])
KAFKA_RECORDS_CONSUMED = prom.Counter('kafka_records_consumed_total', 'Kafka records read',
                                      ['topic'])
KAFKA_LAG = prom.Gauge('kafka_consumer_lag_records', 'High watermark minus position',
                       ['topic', 'partition'])
ROWS_LOADED = prom.Counter('doris_rows_loaded_total', 'Rows loaded', ['table'])
ROWS_FILTERED = prom.Counter('doris_rows_filtered_total', 'Rows filtered by the server', ['table'])
ROWS_DEAD_LETTERED = prom.Counter('doris_rows_dead_lettered_total', 'Rows sent to dead letters',
                                  ['table'])
BYTES_LOADED = prom.Counter('doris_bytes_loaded_total', 'Bytes sent in successful loads', ['table'])
LOAD_FAILURES = prom.Counter('doris_load_failures_total', 'Batches that failed for good', ['table'])

_server_port: Optional[int] = None


def start_metrics_server(port: int, addr: str = '0.0.0.0') -> int:
  """Serves /metrics on ``port`` once per process; returns the port."""
  global _server_port
  if _server_port is None:
    prom.start_http_server(port, addr=addr)
    _server_port = port
  return _server_port


def observe_load(table: str, seconds: float, rows: int, filtered: int, nbytes: int) -> None:
  """Records one successful load."""
  STREAM_LOAD_SECONDS.labels(table).observe(seconds)
  ROWS_LOADED.labels(table).inc(rows)
  if filtered:
    ROWS_FILTERED.labels(table).inc(filtered)
  BYTES_LOADED.labels(table).inc(nbytes)
