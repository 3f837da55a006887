"""The Flex Template agrees with the options, and its image names files that exist."""

import json
import os
import re
import shlex

import pytest

from pipelines.options import FLAG_SPECS, KafkaToDorisOptions
from tests.harness import REPO_ROOT

DATAFLOW_DIR = os.path.join(REPO_ROOT, 'templates', 'dataflow')
METADATA_PATH = os.path.join(DATAFLOW_DIR, 'metadata.json')
DOCKERFILE_PATH = os.path.join(DATAFLOW_DIR, 'Dockerfile')

# Values a user would give the parameters the template requires.
REQUIRED_SAMPLES = {
    'bootstrap_servers': 'broker-1.kafka:9092,broker-2.kafka:9092',
    'topics': 'orders,users',
    'group_id': 'orders-to-doris',
    'fe_nodes': 'http://fe-1:8030,https://fe-2:8030',
}


def _load_metadata():
  with open(METADATA_PATH, encoding='utf-8') as handle:
    return json.load(handle)


def _generator():
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      'generate_metadata', os.path.join(DATAFLOW_DIR, 'generate_metadata.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.unit
def test_metadata_json_is_what_the_generator_writes_from_flag_specs():
  with open(METADATA_PATH, encoding='utf-8') as handle:
    assert handle.read() == _generator().render(), (
        'stale: run python templates/dataflow/generate_metadata.py')


@pytest.mark.unit
def test_metadata_lists_every_flag_and_nothing_else():
  names = [parameter['name'] for parameter in _load_metadata()['parameters']]
  assert len(names) == len(set(names))
  assert set(names) == {spec.name for spec in FLAG_SPECS}


@pytest.mark.unit
def test_metadata_has_name_description_and_help_label_for_every_parameter():
  metadata = _load_metadata()
  assert metadata['name'] and metadata['description']
  for parameter in metadata['parameters']:
    assert parameter['label'] and parameter['helpText'], parameter['name']
    assert isinstance(parameter['isOptional'], bool)
    assert set(parameter) <= {'name', 'label', 'helpText', 'isOptional', 'regexes',
                              'defaultValue'}, parameter['name']


@pytest.mark.unit
def test_metadata_defaults_are_the_flag_defaults_and_match_their_regexes():
  generator = _generator()
  specs = {spec.name: spec for spec in FLAG_SPECS}
  for parameter in _load_metadata()['parameters']:
    spec = specs[parameter['name']]
    if not parameter['isOptional']:
      assert parameter['name'] in generator.REQUIRED_IN_TEMPLATE
      assert 'defaultValue' not in parameter
      continue
    expected = generator.default_text(spec)
    assert parameter.get('defaultValue') == expected, spec.name
    if expected is not None:
      for regex in parameter.get('regexes', []):
        assert re.match(regex, expected), (spec.name, regex, expected)


@pytest.mark.unit
def test_required_parameters_are_the_ones_the_pipeline_cannot_default():
  optional = {p['name']: p['isOptional'] for p in _load_metadata()['parameters']}
  for name in ('topics', 'group_id', 'fe_nodes', 'bootstrap_servers'):
    assert optional[name] is False
  assert optional['password'] is True  # may come from STREAM_LOAD_PASSWORD
  for spec in FLAG_SPECS:
    if spec.default is None and not spec.secret:
      assert optional[spec.name] is False, spec.name


@pytest.mark.unit
def test_sample_values_pass_the_template_regexes():
  regexes = {p['name']: p.get('regexes', []) for p in _load_metadata()['parameters']}
  samples = dict(REQUIRED_SAMPLES, table='demo.events', topic_table_map='orders=shop.orders',
                 table_field='_table', label_prefix='orders_v1', stop_at_end='true',
                 batch_interval_secs='2.5', max_retries='0')
  for name, value in samples.items():
    for regex in regexes[name]:
      assert re.match(regex, value), (name, regex, value)
  for name, value in (('fe_nodes', 'fe-1:8030'), ('table', 'events'), ('compression', 'zstd'),
                      ('batch_rows', '0'), ('stop_at_end', 'yes')):
    assert not all(re.match(regex, value) for regex in regexes[name]), (name, value)


@pytest.mark.unit
def test_template_parameters_parse_to_the_flag_defaults():
  """What the launcher passes (``--name=value`` per parameter) parses like the CLI."""
  argv = []
  for parameter in _load_metadata()['parameters']:
    value = parameter.get('defaultValue', REQUIRED_SAMPLES.get(parameter['name']))
    if value is not None:
      argv.append(f'--{parameter["name"]}={value}')
  opts = KafkaToDorisOptions(argv)
  for spec in FLAG_SPECS:
    if spec.name in REQUIRED_SAMPLES:
      assert getattr(opts, spec.name) == REQUIRED_SAMPLES[spec.name]
    else:
      assert getattr(opts, spec.name) == spec.default, spec.name


def _dockerfile():
  """(env, copies, base): ENV values, COPY src -> dest, the FROM image."""
  with open(DOCKERFILE_PATH, encoding='utf-8') as handle:
    text = handle.read().replace('\\\n', ' ')
  args, env, copies, base = {}, {}, {}, None

  def expand(value):
    return re.sub(r'\$\{(\w+)\}', lambda m: args.get(m.group(1), env.get(m.group(1), '')), value)

  for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    instruction, _, rest = line.partition(' ')
    instruction = instruction.upper()
    if instruction == 'ARG':
      name, _, value = rest.partition('=')
      args[name.strip()] = value.strip()
    elif instruction == 'FROM':
      base = expand(rest.split()[0])
    elif instruction == 'WORKDIR':
      args['__workdir__'] = expand(rest.strip())
    elif instruction == 'ENV':
      name, _, value = rest.partition('=')
      env[name.strip()] = expand(shlex.split(value)[0])
    elif instruction == 'COPY':
      parts = [part for part in shlex.split(rest) if not part.startswith('--')]
      *sources, dest = (expand(part) for part in parts)
      for source in sources:
        copies[source] = dest
  return env, copies, base


@pytest.mark.unit
def test_dockerfile_uses_the_python_launcher_base_image():
  _, _, base = _dockerfile()
  assert re.match(r'^gcr\.io/dataflow-templates-base/python3\d+-template-launcher-base', base)


@pytest.mark.unit
def test_dockerfile_installs_the_package_with_beams_gcp_extra():
  with open(DOCKERFILE_PATH, encoding='utf-8') as handle:
    text = handle.read()
  run = ' '.join(line for line in text.replace('\\\n', ' ').splitlines()
                 if line.startswith('RUN '))
  assert 'pip install' in run
  assert 'apache-beam[gcp]==${BEAM_VERSION}' in run  # DataflowRunner's client libraries
  assert '"${WORKDIR}"' in run


@pytest.mark.unit
def test_dockerfile_entry_points_name_files_copied_from_the_repository():
  env, copies, _ = _dockerfile()
  for variable in ('FLEX_TEMPLATE_PYTHON_PY_FILE', 'FLEX_TEMPLATE_PYTHON_SETUP_FILE'):
    target = env[variable]
    sources = [source for source, dest in copies.items() if dest == target]
    assert sources, f'{variable}={target} is not the destination of a COPY'
    assert os.path.isfile(os.path.join(REPO_ROOT, sources[0])), sources[0]
  for source in copies:
    assert os.path.exists(os.path.join(REPO_ROOT, source)), f'COPY {source}: no such path'
  # The packages the entry point imports are in the image next to it.
  workdir = os.path.dirname(env['FLEX_TEMPLATE_PYTHON_PY_FILE'])
  for package in ('pipelines', 'transforms'):
    assert copies.get(package) == f'{workdir}/{package}'


@pytest.mark.unit
def test_entry_point_turns_on_streaming_for_an_unbounded_read():
  import importlib.util

  from apache_beam.options.pipeline_options import StandardOptions
  spec = importlib.util.spec_from_file_location('flex_main', os.path.join(DATAFLOW_DIR, 'main.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  argv = [f'--{name}={value}' for name, value in REQUIRED_SAMPLES.items()]
  assert module.make_options(argv).view_as(StandardOptions).streaming is True
  bounded = module.make_options(argv + ['--stop_at_end=true'])
  assert bounded.view_as(StandardOptions).streaming is False


def _flex_main():
  import importlib.util
  spec = importlib.util.spec_from_file_location('flex_main', os.path.join(DATAFLOW_DIR, 'main.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.e2e
def test_entry_point_validates_recovers_builds_and_runs_the_job(
    kafka_cluster, stream_load_server, tmp_path):
  """The launcher's code path end to end on the FnApiRunner (its run() runs a bounded job)."""
  import orjson

  from tests.harness import pipeline_argv
  topic = kafka_cluster.unique_topic('flex')
  kafka_cluster.produce(topic, [orjson.dumps({'event_id': i, 'event_type': 'v'})
                                for i in range(300)])
  argv = pipeline_argv(kafka_cluster, stream_load_server, [topic], f'g-{topic}',
                       str(tmp_path / 'dead'), table='demo.events', batch_rows=100)
  result = _flex_main().submit(argv + ['--runner=FnApiRunner'])
  assert result.wait_until_finish() == 'DONE'
  assert stream_load_server.query('SELECT count(*), count(DISTINCT event_id) FROM demo.events'
                                  ) == [(300, 300)]
  assert kafka_cluster.committed(f'g-{topic}', topic) == kafka_cluster.end_offsets(topic)


@pytest.mark.unit
def test_entry_point_reports_a_bad_flag_before_submitting(capsys):
  argv = [f'--{name}={value}' for name, value in REQUIRED_SAMPLES.items()]
  assert _flex_main().main(argv + ['--batch_rows=0', '--table=demo.events']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'batch' in err and 'Traceback' not in err


@pytest.mark.unit
@pytest.mark.parametrize('script', ['build.sh', 'run.sh'])
def test_launch_scripts_exist_and_use_the_template_files(script):
  path = os.path.join(DATAFLOW_DIR, script)
  with open(path, encoding='utf-8') as handle:
    text = handle.read()
  assert text.startswith('#!/usr/bin/env bash')
  assert os.access(path, os.X_OK)
  if script == 'build.sh':
    assert 'gcloud dataflow flex-template build' in text
    assert 'templates/dataflow/metadata.json' in text
    assert 'templates/dataflow/Dockerfile' in text
  else:
    assert 'gcloud dataflow flex-template run' in text
    given = set(re.findall(r'[~^]([a-z_]+)=\$', text))
    assert set(REQUIRED_SAMPLES) <= given
    assert given <= {p['name'] for p in _load_metadata()['parameters']}, given
