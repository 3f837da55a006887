"""Flags and the table config: defaults, validation, clear errors."""

import pytest
import yaml

from pipelines.config import ConfigurationError, PipelineConfig, consumer_config_of
from pipelines.options import FLAG_SPECS, KafkaToDorisOptions
from pipelines.table_config import TableConfigError, load_table_config, parse_table_config
from transforms.batching import BatchLimits
from apache_beam.options.pipeline_options import PipelineOptions

pytestmark = pytest.mark.unit

BASE = ['--bootstrap_servers=k:9092', '--topics=a,b', '--group_id=g',
        '--fe_nodes=http://fe:8030', '--topic_table_map=a=db.ta,b=db.tb']


def _settings(*extra):
  return PipelineConfig.from_options(PipelineOptions(BASE + list(extra)))


def test_defaults_follow_seed_000():
  opts = PipelineOptions(BASE).view_as(KafkaToDorisOptions)
  assert (opts.batch_rows, opts.batch_bytes, opts.batch_interval_secs, opts.flush_workers) == (
      10_000, 10 * 1024 * 1024, 30.0, 4)
  assert opts.stop_at_end is False and opts.compression == 'none' and opts.target == 'doris'


def test_boolean_flags_take_bare_and_valued_forms():
  assert PipelineOptions(BASE + ['--stop_at_end']).view_as(KafkaToDorisOptions).stop_at_end
  assert PipelineOptions(BASE + ['--stop_at_end=true']).view_as(KafkaToDorisOptions).stop_at_end
  assert not PipelineOptions(BASE + ['--stop_at_end=false']).view_as(
      KafkaToDorisOptions).stop_at_end


def test_every_design_flag_exists():
  names = {spec.name for spec in FLAG_SPECS}
  assert {'bootstrap_servers', 'topics', 'group_id', 'stop_at_end', 'fe_nodes', 'user', 'password',
          'table', 'topic_table_map', 'table_field', 'format', 'batch_rows', 'batch_bytes',
          'batch_interval_secs', 'flush_workers', 'label_prefix', 'compression', 'max_retries',
          'table_config', 'target', 'dead_letter_path'} <= names


@pytest.mark.parametrize('extra, message', [
    (['--batch_rows=0'], '--batch_rows'),
    (['--batch_bytes=-5'], '--batch_bytes'),
    (['--batch_interval_secs=0'], '--batch_interval_secs'),
    (['--flush_workers=0'], '--flush_workers'),
    (['--table=db.t'], 'only one of'),
    (['--fe_nodes=ftp://x'], '--fe_nodes'),
    (['--consumer_config=novalue'], '--consumer_config'),
    (['--max_retries=-1'], '--max_retries'),
])
def test_bad_flags_fail_with_the_flag_name(extra, message):
  with pytest.raises(ConfigurationError, match=message):
    _settings(*extra)


def test_unmapped_topic_fails_at_start():
  with pytest.raises(ConfigurationError, match='not mapped'):
    PipelineConfig.from_options(PipelineOptions([
        '--bootstrap_servers=k:9092', '--topics=a,c', '--group_id=g', '--fe_nodes=http://fe:8030',
        '--topic_table_map=a=db.ta']))


def test_missing_required_flags_are_listed():
  with pytest.raises(ConfigurationError, match='--topics'):
    PipelineConfig.from_options(PipelineOptions(['--group_id=g', '--table=db.t']))
  with pytest.raises(ConfigurationError, match='--fe_nodes'):
    PipelineConfig.from_options(PipelineOptions(['--group_id=g', '--table=db.t', '--topics=t']))


def test_consumer_config_never_auto_commits():
  opts = PipelineOptions(BASE + ['--consumer_config=enable.auto.commit=true;security.protocol=SSL']
                         ).view_as(KafkaToDorisOptions)
  config = consumer_config_of(opts)
  assert config['enable.auto.commit'] == 'false'
  assert config['security.protocol'] == 'SSL'


def test_label_prefix_defaults_to_the_group():
  assert _settings().label_prefix == 'g'


def test_table_config_overrides_limits_and_options(tmp_path):
  path = tmp_path / 'tables.yaml'
  path.write_text(yaml.safe_dump({'tables': {
      'db.big': {'batch_rows': 50000, 'shards': 4, 'key_columns': ['id']},
      'db.small': {'batch_interval_secs': 2, 'merge_type': 'MERGE', 'delete_condition': 'op=1',
                   'sequence_column': 'seq', 'headers': {'timezone': 'UTC'}}}}))
  config = load_table_config(str(path), BatchLimits(rows=100))
  assert config.batch_limits()['db.big'] == BatchLimits(rows=50000, shards=4, key_columns=('id',))
  assert config.batch_limits()['db.small'].rows == 100
  assert config.load_options()['db.small'].to_headers()['merge_type'] == 'MERGE'
  assert config.sequence_columns() == {'db.small': 'seq'}


def test_regular_expression_keys_and_defaults_reach_every_table_of_a_family(tmp_path):
  path = tmp_path / 'tables.yaml'
  path.write_text(yaml.safe_dump({
      'defaults': {'buckets': 4, 'properties': {'replication_num': '1'}, 'batch_rows': 500},
      'tables': {
          'ods.shop__orders': {'batch_rows': 9, 'properties': {'compression': 'zstd'}},
          r'ods\.shop__order_\d+': {'batch_interval_secs': 5, 'buckets': 16},
          r'ods\..*': {'batch_interval_secs': 7}}}, sort_keys=False))
  config = load_table_config(str(path), BatchLimits(rows=100, interval_secs=30))
  limits = config.batch_limits()
  assert limits['ods.shop__orders'] == BatchLimits(rows=9, interval_secs=30)   # exact wins
  assert limits['ods.shop__order_07'] == BatchLimits(rows=500, interval_secs=5)
  assert limits['ods.other'] == BatchLimits(rows=500, interval_secs=7)  # the next expression
  assert limits['dw.facts'] == BatchLimits(rows=500, interval_secs=30)  # defaults only
  assert limits.get('ods.shop__order_x7', None) == BatchLimits(rows=500, interval_secs=7)
  ddl = config.ddl_options()
  assert ddl['ods.shop__order_01'].buckets == 16
  assert dict(ddl['ods.shop__orders'].properties) == {'replication_num': '1',
                                                       'compression': 'zstd'}
  assert ddl['dw.facts'].buckets == 4
  assert list(limits) == ['ods.shop__orders']  # the named tables only (start-up checks)
  rules_only = load_table_config_text(tmp_path, {'defaults': {'batch_rows': 7}})
  assert rules_only.batch_limits() and rules_only.batch_limits()['a.b'].rows == 7
  # Handed on whole: the sink keeps the rules (an empty-looking map is not replaced).
  from transforms.stream_load import SinkSettings, StreamLoadConfig  # pylint: disable=import-outside-toplevel
  settings = SinkSettings(StreamLoadConfig(fe_nodes=('http://fe:8030',), user='u', password=''),
                          table_options=load_table_config_text(
                              tmp_path, {'defaults': {'max_filter_ratio': 0.5}}).load_options())
  assert settings.table_options.get('a.b').max_filter_ratio == 0.5


def load_table_config_text(tmp_path, document):
  path = tmp_path / 'rules.yaml'
  path.write_text(yaml.safe_dump(document, sort_keys=False))
  return load_table_config(str(path), BatchLimits(rows=100))


@pytest.mark.parametrize('document, message', [
    ({'tables': {'nodot': {}}}, 'db.tbl'),
    ({'tables': {'db.t': {'batch_rowz': 1}}}, 'unknown key'),
    ({'tables': {'db.t': {'batch_rows': 'many'}}}, 'batch_rows must be int'),
    ({'tables': {'db.t': {'batch_rows': -1}}}, '--batch_rows'),
    ({'tables': {'db.t': {'merge_type': 'UPSERT'}}}, 'merge_type'),
    ({'tables': {'db.t': {'partial_columns': 'yes'}}}, 'partial_columns must be bool'),
    ({'tablez': {}}, '"tables"'),
    ({'tables': {r'db\.t_(\d+': {}}}, 'regular expression'),
    ({'tables': {r'db\.t_\d+': {'shards': 2}}}, 'shards must be set per table, by its name'),
    ({'defaults': {'load_format': 'csv'}}, 'defaults: load_format must be set per table'),
    ({'defaults': {'buckets': 'some'}}, 'buckets must be a positive integer'),
])
def test_bad_table_config_names_table_and_key(document, message):
  with pytest.raises(TableConfigError, match=message):
    parse_table_config(document, BatchLimits())


def test_unreadable_and_invalid_yaml_files(tmp_path):
  with pytest.raises(TableConfigError, match='cannot read'):
    load_table_config(str(tmp_path / 'missing.yaml'), BatchLimits())
  bad = tmp_path / 'bad.yaml'
  bad.write_text('tables: [unclosed')
  with pytest.raises(TableConfigError, match='not valid YAML'):
    load_table_config(str(bad), BatchLimits())


def test_delivery_guarantee_defaults_to_exactly_once_with_a_journal():
  assert _settings().exactly_once
  assert _settings().journal.topic == 'stream_load_journal'
  assert _settings().journal.group == 'g'
  assert not _settings('--delivery_guarantee=at_least_once').exactly_once
  assert _settings('--journal_topic=mine').journal.topic == 'mine'


def test_pending_bytes_bound_defaults_to_workers_times_batch_bytes():
  assert _settings().max_pending_bytes == 4 * 10 * 1024 * 1024
  assert _settings('--max_pending_bytes=1000').max_pending_bytes == 1000


def test_help_documents_every_flag(capsys):
  from pipelines.kafka_to_doris import run
  assert run(['--help']) == 0
  out = capsys.readouterr().out
  missing = [spec.name for spec in FLAG_SPECS if f'--{spec.name}' not in out]
  assert not missing
  flat = ' '.join(out.split())
  assert 'Default: 10000.' in flat and 'STREAM_LOAD_PASSWORD' in flat


def test_preflight_reports_missing_tables_and_tolerates_fes_without_the_endpoints():
  import http.server
  import threading
  from pipelines.preflight import PreflightError, check_tables
  from transforms.stream_load import StreamLoadConfig

  class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
      self.send_response(404)
      self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    config = StreamLoadConfig(fe_nodes=(f'http://127.0.0.1:{server.server_port}',), user='root')
    check_tables(config, ['db.t'])  # cannot tell: a warning, not a failure
  finally:
    server.shutdown()
  with pytest.raises(PreflightError, match='no FE reachable'):
    check_tables(StreamLoadConfig(fe_nodes=('http://127.0.0.1:1',), user='root',
                                  connect_timeout_secs=1), ['db.t'])


def test_the_flags_reference_is_generated_from_the_flag_list():
  """docs/flags.md is what ``python -m pipelines.options`` writes (regenerate it when a flag
  changes)."""
  import os
  from pipelines.options import FLAG_SPECS, flags_markdown
  from tests.harness import REPO_ROOT
  with open(os.path.join(REPO_ROOT, 'docs', 'flags.md'), encoding='utf-8') as handle:
    assert handle.read().strip() == flags_markdown().strip()
  text = flags_markdown()
  assert all(f'`--{spec.name}`' in text for spec in FLAG_SPECS)


def test_flags_of_the_loader_beam_and_with_flink_the_flink_runner_pass_the_check():
  from pipelines.flag_check import check_flags
  check_flags(['--batch_rows=5', '--streaming', '--runner=DirectRunner', '--job_name=x'])
  check_flags(['--runner=FlinkRunner', '--flink_master=[local]', '--checkpointing_interval',
               '2000', '--finish_bundle_before_checkpointing', '--batch_rows=5'])
  check_flags(['--runner=PortableRunner', '--max_bundle_time_mills=200'])


@pytest.mark.parametrize('argv, message', [
    (['--batch_rowz=5'], 'unknown flag --batch_rowz (did you mean --batch_rows?)'),
    (['--runner=FlinkRunner', '--batch_rowz=5'], 'unknown flag --batch_rowz'),
    (['--checkpointing_interval=5'], '--checkpointing_interval is an option of the Flink runner'),
    (['--runner=PrismRunner', '--checkpointing_interval=5'], 'with --runner=PrismRunner'),
    (['--batch_rows=many'], "--batch_rows: invalid int value: 'many'"),
    (['--delivery_guarantee=twice'], '--delivery_guarantee: invalid choice'),
    (['--topics', 'a', 'b'], "'b' is not a flag"),
])
def test_an_unknown_flag_or_a_bad_value_is_one_line_naming_it(argv, message):
  from pipelines.flag_check import check_flags
  with pytest.raises(ConfigurationError) as raised:
    check_flags(argv)
  assert message in str(raised.value) and '\n' not in str(raised.value)
