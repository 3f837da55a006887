"""``--ddl_topic`` on the portable runners: Prism, and Flink with two SDK worker processes (each
follows the schema change topic itself; every change still runs once)."""

import collections

import pytest

from tests.harness import pipeline_argv, read_dead_letters, run_cli
from tests.pipelines.helpers import nonempty_end_offsets
from tests.pipelines.test_ddl_topic import (DB, _columns, _customers_history, _produce_customers,
                                            _produce_rows, _row, _setup, _truncate)
from tests.pipelines.test_flink import _flink
from tests.pipelines.test_prism import _prism

pytestmark = pytest.mark.integration


def _run_history(kafka, server, tmp_path, name, runner_flags, worker_logs_here=True):
  prefix = _produce_customers(kafka, server, name)
  group = f'g-{prefix}'
  dead = str(tmp_path / 'dead')
  argv = pipeline_argv(kafka, server, [f'{prefix}.{DB}.customers'], group, dead,
                       cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve')
  result = run_cli(argv + runner_flags, timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  # Made from the topic before any row, then changed in the source's order; the narrowing is
  # refused by the FE with its reason.
  assert _columns(server, f'{DB}.notes') == [('id', 'BIGINT'), ('note', 'VARCHAR(60)')]
  assert _columns(server, f'{DB}.customers') == [
      ('id', 'INT'), ('full_name', 'VARCHAR(150)'), ('score', 'BIGINT')]
  assert sorted(server.query(f'SELECT id, full_name, score FROM {DB}.customers')) == [
      (1, 'ann', 5_000_000_000), (2, 'bo', 7), (3, 'cy', 3), (4, 'dee', 4), (5, 'eve', 5)]
  if worker_logs_here:  # (Flink's external SDK workers log to their own pool's output)
    assert 'Can not change BIGINT to INT' in result.stderr
  assert read_dead_letters(dead) == []
  ran = collections.Counter(' '.join(stmt.split()) for _, stmt in server.storage.load_ddl()
                            if not stmt.startswith('CREATE DATABASE'))
  # Each change once; two workers reaching a CREATE at the same instant may both send it (IF NOT
  # EXISTS: the second does nothing), and an ALTER the other ran first is refused as done.
  twice = {stmt[:120]: count for stmt, count in ran.items()
           if count != 1 and not (stmt.startswith('CREATE TABLE IF NOT EXISTS') and count == 2)}
  assert ran and not twice, twice
  assert sum(stmt.startswith('ALTER') for stmt in ran) == 4  # add, widen, rename, drop
  assert kafka.committed(group, prefix) == nonempty_end_offsets(kafka, prefix)


def test_ddl_from_the_schema_change_topic_on_prism(kafka_cluster, stream_load_server, tmp_path,
                                                   prism_binary):
  _run_history(kafka_cluster, stream_load_server, tmp_path, 'prismddl', _prism(prism_binary))


def test_ddl_from_the_schema_change_topic_on_flink_with_two_workers(
    kafka_cluster, stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool):
  _run_history(kafka_cluster, stream_load_server, tmp_path, 'flinkddl',
               _flink(flink_job_server_jar, pool=sdk_worker_pool), worker_logs_here=False)


def test_a_truncate_runs_once_on_flink_with_two_workers(
    kafka_cluster, stream_load_server, tmp_path, flink_job_server_jar, sdk_worker_pool):
  """Both workers hold the table's rows and reach the truncate; one elected worker runs it
  (run twice, it could remove rows the first one's worker loaded after it)."""
  prefix = _setup(kafka_cluster, stream_load_server, 'flinktrunc')
  rows_topic = f'{prefix}.{DB}.customers'
  kafka_cluster.produce(prefix, [_customers_history()[0], _truncate(400)], partition=0)
  _produce_rows(kafka_cluster, prefix, 'customers', [
      _row('customers', 'c', 200 + i, after={'id': i, 'name': f'n{i}', 'score': i})
      for i in range(8)] + [
      _row('customers', 'c', 500 + i, after={'id': 100 + i, 'name': f'm{i}', 'score': i})
      for i in range(8)])
  group, dead = f'g-{prefix}', str(tmp_path / 'dead')
  argv = pipeline_argv(kafka_cluster, stream_load_server, [rows_topic], group, dead,
                       cdc_format='debezium', ddl_topic=prefix, schema_evolution='evolve',
                       schema_change_types='create_table,add_column,truncate_table')
  result = run_cli(argv + _flink(flink_job_server_jar, pool=sdk_worker_pool), timeout_secs=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(row[0] for row in stream_load_server.query(
      f'SELECT id FROM {DB}.customers')) == [100 + i for i in range(8)]
  truncates = [stmt for _, stmt in stream_load_server.storage.load_ddl()
               if stmt.startswith('TRUNCATE')]
  assert truncates == [f'TRUNCATE TABLE `{DB}`.`customers`'], truncates
  assert read_dead_letters(dead) == []
