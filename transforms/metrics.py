"""The loader's metrics: the Beam metrics namespace, and Prometheus (``--metrics_port``).

Beam metrics (namespace ``NAMESPACE``) are the runner's view, reported by every
runner.  The Prometheus metrics are for a Prometheus scraping
the worker: batch flush duration, Stream Load duration, the rows and bytes
waiting in each table's current batch, Kafka records consumed and lag, and rows
loaded / filtered / dead-lettered.  They live in the default registry of the
process that runs the DoFns.
"""

from __future__ import annotations

import prometheus_client as prom

__all__ = ['NAMESPACE', 'observe_load', 'FAILURE_REASONS']

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
# Every failed load attempt, by its reason (FAILURE_REASONS); retried ones included.
LOAD_FAILURES = prom.Counter('doris_load_failures_total', 'Failed load attempts, by reason',
                             ['table', 'reason'])
LOAD_RETRIES = prom.Counter('doris_load_retries_total', 'Load attempts retried', ['table'])
DEAD_LETTERS = prom.Counter('doris_dead_letters_total', 'Dead letters written, by reason code',
                            ['table', 'reason'])
LAST_SUCCESSFUL_LOAD = prom.Gauge('doris_last_successful_load_timestamp_seconds',
                                  'When a load of the table last succeeded (Unix time)', ['table'])
TABLE_STALLED = prom.Gauge('doris_table_stalled',
                           '1 while the table has pending rows and no successful load for its '
                           'stall window', ['table'])
KAFKA_COMMITTED_LAG = prom.Gauge('kafka_consumer_committed_lag_records',
                                 'End offset minus the committed offset: records not yet loaded '
                                 'for good', ['topic', 'partition'])
KAFKA_COMMITTED_OFFSET = prom.Gauge('kafka_committed_offset', 'Offset committed for the group',
                                    ['topic', 'partition'])
PARTITION_STALLED = prom.Gauge('kafka_partition_stalled',
                               '1 while the committed offset has not moved for the stall window '
                               'and the lag grew', ['topic', 'partition'])
DRAINING = prom.Gauge('loader_draining', '1 once the job drains (SIGTERM/SIGINT)')
# Reasons of doris_load_failures_total.
FAILURE_REASONS = ('too_many_versions', 'txn_limit', 'timeout', 'connection', 'server_error',
                   'auth', 'data_quality', 'table_not_found', 'unclassified', 'retryable',
                   'permanent', 'journal')



def observe_load(table: str, seconds: float, rows: int, filtered: int, nbytes: int) -> None:
  """Records one successful load."""
  STREAM_LOAD_SECONDS.labels(table).observe(seconds)
  ROWS_LOADED.labels(table).inc(rows)
  if filtered:
    ROWS_FILTERED.labels(table).inc(filtered)
  BYTES_LOADED.labels(table).inc(nbytes)
