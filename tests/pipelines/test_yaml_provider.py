"""The Beam YAML example runs end to end: mock Kafka -> YAML pipeline -> local Stream Load."""

import json
import os

import orjson
import pytest

from tests.harness import REPO_ROOT, read_dead_letters

# Beam YAML needs the apache-beam[yaml] extra (jinja2, jsonschema, docstring-parser, pandas).
# Beam YAML needs apache-beam[yaml] (jinja2, docstring-parser): the test extra installs it, and a
# missing one fails here instead of skipping a capability the README claims.
import docstring_parser  # noqa: F401,E402  pylint: disable=unused-import
import jinja2  # noqa: F401,E402  pylint: disable=unused-import

pytestmark = pytest.mark.e2e

YAML_DIR = os.path.join(REPO_ROOT, 'templates', 'yaml')
PIPELINE_FILE = os.path.join(YAML_DIR, 'kafka_to_doris.yaml')


def _event(i):
  return orjson.dumps({'event_id': i, 'user_id': i % 7, 'event_type': 'click', 'amount': 2.5})


def _run_yaml(argv):
  from apache_beam.yaml import main
  main.run(argv=argv)


def test_yaml_example_loads_every_record_once_and_commits_offsets(
    kafka_cluster, stream_load_server, tmp_path, monkeypatch):
  topic = kafka_cluster.unique_topic('yaml')
  n = 300
  # A tombstone (skipped by the example's Filter step) and a record that is not JSON.
  kafka_cluster.produce(topic, [_event(i) for i in range(n)] + [None, b'{broken json'])
  group = f'g-{topic}'
  monkeypatch.setenv('STREAM_LOAD_PASSWORD', 'secret')
  dead_dir = str(tmp_path / 'dead')
  variables = {
      'bootstrap_servers': kafka_cluster.bootstrap_servers, 'topics': topic, 'group_id': group,
      'fe_nodes': stream_load_server.fe_url, 'table': 'demo.events', 'stop_at_end': True,
      'batch_rows': 100, 'batch_interval_secs': 60, 'dead_letter_path': dead_dir,
  }
  # The command line of templates/README.md, in this process (FnApiRunner).
  _run_yaml([f'--yaml_pipeline_file={PIPELINE_FILE}', '--runner=FnApiRunner',
             f'--jinja_variables={json.dumps(variables)}'])

  assert stream_load_server.query(
      'SELECT count(*), count(DISTINCT event_id) FROM demo.events') == [(n, n)]
  letters = read_dead_letters(dead_dir)
  assert [letter['offset'] is not None for letter in letters] == [True]
  assert 'invalid_json' in letters[0]['reason']
  # Every loaded or dead-lettered record is behind the committed offsets.  The
  # tombstone, last of partition 0, never reached the writer: its offset stays
  # uncommitted until a later record of that partition is loaded.
  end = kafka_cluster.end_offsets(topic)
  assert end == {0: 76, 1: 76, 2: 75, 3: 75}
  assert kafka_cluster.committed(group, topic) == {**end, 0: 75}


def test_yaml_rerun_after_commit_loads_nothing_twice(kafka_cluster, stream_load_server, tmp_path,
                                                     monkeypatch):
  topic = kafka_cluster.unique_topic('yaml-rerun')
  kafka_cluster.produce(topic, [_event(i) for i in range(40)])
  group = f'g-{topic}'
  monkeypatch.setenv('STREAM_LOAD_PASSWORD', 'secret')
  variables = {
      'bootstrap_servers': kafka_cluster.bootstrap_servers, 'topics': topic, 'group_id': group,
      'fe_nodes': stream_load_server.fe_url, 'table': 'demo.events', 'stop_at_end': True,
      'dead_letter_path': str(tmp_path / 'dead'),
  }
  argv = [f'--yaml_pipeline_file={PIPELINE_FILE}', '--runner=FnApiRunner',
          f'--jinja_variables={json.dumps(variables)}']
  _run_yaml(argv)
  _run_yaml(argv)  # resumes at the committed offsets: nothing left to read
  assert stream_load_server.query('SELECT count(*) FROM demo.events') == [(40,)]


def test_provider_file_names_the_callables_of_transforms_yaml_provider():
  import yaml
  from apache_beam.yaml import yaml_provider as beam_yaml_provider
  from pipelines import yaml_provider

  with open(os.path.join(YAML_DIR, 'providers.yaml')) as handle:
    specs = yaml.safe_load(handle)
  assert [spec['type'] for spec in specs] == ['python']
  assert specs[0]['transforms'] == yaml_provider.provider_transforms()
  providers = beam_yaml_provider.load_providers(os.path.join(YAML_DIR, 'providers.yaml'))
  assert sorted(providers[0].provided_transforms()) == ['ReadFromKafkaNative', 'WriteToStreamLoad']


def test_provider_transforms_document_every_config_field():
  """YAML's docs and config checks read the callables' signatures and Args: sections."""
  from apache_beam.yaml import yaml_provider as beam_yaml_provider
  provider = beam_yaml_provider.load_providers(os.path.join(YAML_DIR, 'providers.yaml'))[0]
  for name in provider.provided_transforms():
    assert provider.description(name), name
    fields = {field.name: field for field in provider.config_schema(name).fields}
    for field in fields.values():
      assert field.description, (name, field.name)
    # Plain scalars (not opaque Python objects), so YAML can check and document them.
    for scalar in ('group_id', 'bootstrap_servers'):
      assert fields[scalar].type.WhichOneof('type_info') == 'atomic_type', (name, scalar)


def test_write_to_stream_load_rejects_bad_config_with_the_setting_name():
  from pipelines.yaml_provider import YamlWriteToStreamLoad
  with pytest.raises(ValueError, match='input_format'):
    YamlWriteToStreamLoad(fe_nodes='http://fe:8030', table='demo.events', input_format='csv')
  with pytest.raises(ValueError, match='--batch_rows'):
    YamlWriteToStreamLoad(fe_nodes='http://fe:8030', table='demo.events', batch_rows=0)
  with pytest.raises(ValueError, match='only one of --table'):
    YamlWriteToStreamLoad(fe_nodes='http://fe:8030', table='demo.events', table_field='t')


def test_yaml_transform_in_python_loads_column_rows(stream_load_server, monkeypatch):
  """Rows that are not Kafka records (here YAML's Create) are loaded as columns."""
  import apache_beam as beam
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  from apache_beam.yaml import yaml_provider as beam_yaml_provider
  from apache_beam.yaml.yaml_transform import YamlTransform

  monkeypatch.setenv('STREAM_LOAD_PASSWORD', 'secret')
  spec = f'''
    type: chain
    transforms:
      - type: Create
        config:
          elements:
            - {{event_id: 1, user_id: 10, event_type: signup, target: demo.events}}
            - {{event_id: 2, user_id: 20, event_type: click, target: demo.events}}
            - {{event_id: 3, user_id: 30, event_type: click, target: nodb}}
      - type: WriteToStreamLoad
        config:
          fe_nodes: {stream_load_server.fe_url}
          table_field: target
          batch_rows: 10
    '''
  providers = beam_yaml_provider.load_providers(os.path.join(YAML_DIR, 'providers.yaml'))
  with beam.Pipeline(runner=FnApiRunner()) as p:
    _ = p | YamlTransform(spec, providers=providers)
  # The routing field stays a column the table does not have: Doris ignores it in JSON loads.
  assert stream_load_server.query(
      'SELECT event_id, event_type FROM demo.events ORDER BY event_id') == [(1, 'signup'),
                                                                           (2, 'click')]
