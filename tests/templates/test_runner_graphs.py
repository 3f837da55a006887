"""The pipeline graph builds for FlinkRunner and DataflowRunner, without submitting anything.

Graph construction and option validation only: nothing here starts a Flink
job server, needs Java or reaches Google Cloud.  The Kafka reader checks its
topics while the graph is built, so the local mock cluster stands in for the
brokers.
"""

import os
import re

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.portability.api import beam_runner_api_pb2

from pipelines.assembly import build_pipeline
from pipelines.config import PipelineConfig
from pipelines.options import FLAG_SPECS
from tests.harness import REPO_ROOT

pytestmark = pytest.mark.transform

FLINK_DIR = os.path.join(REPO_ROOT, 'templates', 'flink')

# Step labels that runners key state on; an update/savepoint restore needs them stable.
STABLE_LABELS = ('ReadFromKafka', 'ParseRecords', 'KeyByTable', 'BatchPerTable',
                 'WriteToStreamLoad', 'WriteDeadLetters', 'CommitOffsets')

# Flags of the Java Flink runner (FlinkPipelineOptions): the Python SDK does not
# parse them, the job server receives them with the pipeline options.
JAVA_FLINK_FLAGS = {
    'checkpointing_interval', 'checkpointing_mode', 'checkpoint_timeout_millis',
    'min_pause_between_checkpoints', 'finish_bundle_before_checkpointing',
    'externalized_checkpoints_enabled', 'retain_externalized_checkpoints_on_cancellation',
    'savepoint_path', 'allow_non_restored_state', 'max_bundle_size', 'max_bundle_time_mills',
    'number_of_execution_retries', 'execution_retry_delay', 'state_backend',
    'shutdown_sources_after_idle_ms', 'sdk_worker_parallelism',
    'state_backend_storage_path', 'job_name',
}


@pytest.fixture(scope='module')
def topic(kafka_cluster):
  name = kafka_cluster.unique_topic('graph')
  kafka_cluster.produce(name, [b'{"event_id": 1}'])
  return name


def _pipeline_flags(kafka_cluster, topic):
  return [f'--bootstrap_servers={kafka_cluster.bootstrap_servers}', f'--topics={topic}',
          '--group_id=graph-test', '--fe_nodes=http://fe-1:8030,http://fe-2:8030',
          '--table=demo.events', '--password=unused']


def _build(argv):
  options = PipelineOptions(argv)
  p = beam.Pipeline(options=options)
  outputs = build_pipeline(p, PipelineConfig.from_options(options))
  assert outputs.load_results is not None and outputs.commits is not None
  proto = p.to_runner_api()
  errors = PipelineOptionsValidator(options, p.runner).validate()
  return options, p, proto, errors


def _labels(proto):
  return {t.unique_name for t in proto.components.transforms.values()}


def _assert_portable_features(proto):
  labels = _labels(proto)
  for label in STABLE_LABELS:
    assert label in labels, label
  requirements = set(proto.requirements)
  assert 'beam:requirement:pardo:splittable_dofn:v1' in requirements
  # No row crosses a shuffle (which costs a pickle per row and loses their order per key in
  # Flink's batch mode): the only grouping is the Reshuffle spreading the partitions before the
  # read, and no step keeps Beam state or timers -- everything after the read is fused with it.
  groupings = [t.unique_name for t in proto.components.transforms.values()
               if t.spec.urn == 'beam:transform:group_by_key:v1']
  assert len(groupings) == 1 and groupings[0].startswith('ReadFromKafka/Reshuffle'), groupings
  assert 'beam:requirement:pardo:stateful:v1' not in requirements
  for transform in proto.components.transforms.values():
    if transform.spec.urn == 'beam:transform:pardo:v1':
      payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
      assert not payload.state_specs and not payload.timer_family_specs, transform.unique_name
  # Without --stop_at_end the read is unbounded: runners run the job in streaming mode.
  read = next(t for t in proto.components.transforms.values()
              if t.unique_name.endswith('ReadFromKafka/ReadPartitions'))
  assert [proto.components.pcollections[pcoll].is_bounded for pcoll in read.outputs.values()] == [
      beam_runner_api_pb2.IsBounded.UNBOUNDED]


@pytest.mark.parametrize('environment', [
    ['--flink_master=[auto]'],
    ['--flink_master=[local]', '--environment_type=LOOPBACK'],
    ['--flink_master=flink-jobmanager:8081', '--environment_type=DOCKER',
     '--environment_config=europe-docker.pkg.dev/p/r/kafka-to-doris-worker:1'],
    ['--flink_master=flink-jobmanager:8081', '--environment_type=PROCESS',
     '--environment_config={"command": "/opt/apache/beam/boot"}'],
    ['--flink_master=flink-jobmanager:8081', '--environment_type=EXTERNAL',
     '--environment_config=localhost:50000'],
    ['--flink_master=flink-jobmanager:8081', '--flink_submit_uber_jar',
     '--environment_type=EXTERNAL', '--environment_config=localhost:50000'],
], ids=['auto', 'local-loopback', 'docker', 'process', 'external', 'uber-jar'])
def test_flink_runner_graph_builds_and_options_validate(kafka_cluster, topic, environment):
  argv = ['--runner=FlinkRunner', '--flink_version=1.20', '--parallelism=4', '--streaming',
          '--checkpointing_interval=60000', '--finish_bundle_before_checkpointing',
          *environment, *_pipeline_flags(kafka_cluster, topic)]
  options, p, proto, errors = _build(argv)
  assert errors == []
  assert type(p.runner).__name__ == 'FlinkRunner'
  flink = options.view_as(FlinkRunnerOptions)
  assert flink.flink_version in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
  assert flink.parallelism == 4
  assert options.view_as(StandardOptions).streaming
  # Java-side flags are kept for the job server, not dropped.
  retained = options.get_all_options(retain_unknown_options=True)
  assert str(retained['checkpointing_interval']) == '60000'
  assert retained['finish_bundle_before_checkpointing'] is True
  _assert_portable_features(proto)


def test_portable_job_server_route_graph_builds(kafka_cluster, topic):
  argv = ['--runner=PortableRunner', '--job_endpoint=localhost:8099',
          '--artifact_endpoint=localhost:8098', '--environment_type=EXTERNAL',
          '--environment_config=localhost:50000', '--streaming',
          *_pipeline_flags(kafka_cluster, topic)]
  options, p, proto, errors = _build(argv)
  assert errors == []
  assert options.view_as(PortableOptions).job_endpoint == 'localhost:8099'
  _assert_portable_features(proto)


def test_dataflow_runner_graph_builds_and_options_validate(kafka_cluster, topic):
  argv = ['--runner=DataflowRunner', '--project=my-gcp-project', '--region=europe-west1',
          '--temp_location=gs://my-bucket/tmp', '--staging_location=gs://my-bucket/staging',
          '--streaming', '--enable_streaming_engine', f'--setup_file={REPO_ROOT}/setup.py',
          '--max_num_workers=4', *_pipeline_flags(kafka_cluster, topic)]
  options, p, proto, errors = _build(argv)
  assert errors == []
  assert type(p.runner).__name__ == 'DataflowRunner'
  _assert_portable_features(proto)


def test_flink_script_uses_only_known_flags():
  """Every --flag in the Flink launch script is a Beam, pipeline or Java Flink flag."""
  with open(os.path.join(FLINK_DIR, 'run_flink.sh'), encoding='utf-8') as handle:
    text = handle.read()
  used = set(re.findall(r'(?<![\w-])--([a-z][a-z0-9_-]*)', text))
  python_flags = set()
  parser_options = PipelineOptions([]).get_all_options()
  python_flags.update(parser_options)
  python_flags.update(spec.name for spec in FLAG_SPECS)
  # Flags of the job server jar / docker image, and of the YAML entry point.
  other = {'flink-master', 'job-port', 'artifact-port', 'expansion-port', 'net'}
  unknown = used - python_flags - JAVA_FLINK_FLAGS - other
  assert not unknown, f'unknown flags in run_flink.sh: {sorted(unknown)}'
  for needed in ('flink_master', 'flink_version', 'environment_type', 'checkpointing_interval',
                 'parallelism', 'job_endpoint', 'flink_job_server_jar'):
    assert needed in used, needed


def _script_argv(mode, kafka_cluster, topic, **env):
  """The command line run_flink.sh runs for ``mode`` (with PYTHON=echo)."""
  import subprocess
  full_env = dict(os.environ, PYTHON='echo', BOOTSTRAP_SERVERS=kafka_cluster.bootstrap_servers,
                  TOPICS=topic, GROUP_ID='graph-test', FE_NODES='http://fe-1:8030',
                  TABLE='demo.events', FLINK_JOB_SERVER_JAR='/opt/job-server.jar', **env)
  result = subprocess.run(['bash', os.path.join(FLINK_DIR, 'run_flink.sh'), mode],
                          capture_output=True, text=True, env=full_env, cwd=REPO_ROOT, timeout=30)
  assert result.returncode == 0, result.stderr
  argv = result.stdout.split()
  assert argv[:2] == ['-m', 'pipelines.kafka_to_doris'], argv
  return argv[2:]


@pytest.mark.parametrize('mode, env', [
    ('local', {}),
    ('remote', {'ENVIRONMENT_TYPE': 'DOCKER', 'ENVIRONMENT_CONFIG': 'registry/worker:1'}),
    ('uber-jar', {'ENVIRONMENT_TYPE': 'EXTERNAL', 'ENVIRONMENT_CONFIG': 'localhost:50000'}),
    ('portable', {'ENVIRONMENT_TYPE': 'EXTERNAL', 'ENVIRONMENT_CONFIG': 'localhost:50000',
                  'SAVEPOINT_PATH': 's3://bucket/savepoints/sp-1'}),
])
def test_flink_script_command_lines_build_the_graph(kafka_cluster, topic, mode, env):
  from pipelines.runners import prepare_argv  # what the command line does with them
  argv = prepare_argv(_script_argv(mode, kafka_cluster, topic, **env))
  options, p, proto, errors = _build(argv + ['--password=unused'])
  assert errors == []
  expected_runner = 'PortableRunner' if mode == 'portable' else 'FlinkRunner'
  assert type(p.runner).__name__ == expected_runner
  retained = options.get_all_options(retain_unknown_options=True)
  assert str(retained['checkpointing_interval']) == '60000'
  assert options.view_as(StandardOptions).streaming
  if mode == 'local':
    assert options.view_as(PortableOptions).environment_type == 'LOOPBACK'
    assert 'externalized_checkpoints_enabled' not in retained
  else:
    assert options.view_as(PortableOptions).environment_type == env['ENVIRONMENT_TYPE']
    assert retained['externalized_checkpoints_enabled'] is True
  _assert_portable_features(proto)
