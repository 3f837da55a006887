"""The package builds the way ``--setup_file`` ships it to remote workers, offline."""

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from tests.harness import REPO_ROOT

pytestmark = pytest.mark.unit

# What the Flex Template image holds (templates/dataflow/Dockerfile COPY lines).
IMAGE_LAYOUT = ('setup.py', 'pipelines', 'transforms')
MODULES = ('pipelines/kafka_to_doris.py', 'pipelines/options.py', 'pipelines/assembly.py',
           'pipelines/yaml_provider.py', 'transforms/kafka/reader.py',
           'transforms/stream_load/sink.py', 'transforms/delivery/journal.py')


def _copy_layout(dest):
  for name in IMAGE_LAYOUT:
    source = os.path.join(REPO_ROOT, name)
    if os.path.isdir(source):
      shutil.copytree(source, os.path.join(dest, name),
                      ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    else:
      shutil.copy(source, dest)


@pytest.fixture(scope='module')
def sdist(tmp_path_factory):
  """The sdist Beam's stager builds from setup.py (what --setup_file stages)."""
  from apache_beam.runners.portability.stager import Stager
  source = tmp_path_factory.mktemp('source')
  out = tmp_path_factory.mktemp('sdist')
  _copy_layout(str(source))
  path = Stager._build_setup_package(os.path.join(str(source), 'setup.py'), str(out))
  return path


def test_setup_file_builds_an_sdist_with_the_pipeline_modules(sdist):
  # setuptools >= 69 normalizes the name to underscores.
  assert os.path.basename(sdist).replace('-', '_').startswith('kafka_beam_stream_load_0.2.0')
  with tarfile.open(sdist) as archive:
    names = {name.split('/', 1)[1] for name in archive.getnames() if '/' in name}
  for module in MODULES:
    assert module in names, module
  assert 'pipelines/samples/demo_tables.yaml' in names


def test_sdist_pins_every_runtime_dependency_to_a_compatible_range(sdist):
  from packaging.requirements import Requirement
  with tarfile.open(sdist) as archive:
    requires = next(name for name in archive.getnames() if name.endswith('requires.txt'))
    text = archive.extractfile(requires).read().decode()
  runtime = text.split('\n[', 1)[0].split()
  names = set()
  for line in runtime:
    requirement = Requirement(line)
    names.add(requirement.name.lower())
    operators = {spec.operator for spec in requirement.specifier}
    if requirement.name.lower() == 'apache-beam':
      assert operators == {'=='}, f'{line}: the SDK must be the workers\' version exactly'
    else:
      assert {'>=', '<'} <= operators, f'{line}: needs a lower and an upper bound'
  assert {'apache-beam', 'confluent-kafka', 'requests', 'orjson', 'pyyaml'} <= names


def test_the_beam_version_is_one_everywhere():
  """The SDK that submits, the one installed here, the Dockerfile's and the docs' are one
  version: a worker with another SDK version than the job's fails or misbehaves."""
  import re
  import apache_beam
  with open(os.path.join(REPO_ROOT, 'setup.py'), encoding='utf-8') as handle:
    pinned = re.search(r"BEAM_VERSION = '([0-9.]+)'", handle.read()).group(1)
  assert apache_beam.__version__ == pinned
  with open(os.path.join(REPO_ROOT, 'templates', 'dataflow', 'Dockerfile'),
            encoding='utf-8') as handle:
    assert f'ARG BEAM_VERSION={pinned}' in handle.read()
  stale = []
  for folder, _, files in os.walk(REPO_ROOT):
    if any(part in folder for part in ('.venv', '.git', '.jars', '__pycache__')):
      continue
    for name in files:
      if not name.endswith(('.md', '.sh', '.yaml', '.py', 'Dockerfile')):
        continue
      path = os.path.join(folder, name)
      with open(path, encoding='utf-8', errors='replace') as handle:
        for match in re.finditer(r'(?:beam_python3\.\d+_sdk:|apache-beam(?:\[\w+\])?==)'
                                 r'([0-9.]+)', handle.read()):
          if match.group(1) != pinned:
            stale.append(f'{os.path.relpath(path, REPO_ROOT)}: {match.group(0)}')
  assert not stale, stale


def test_wheel_builds_offline_from_the_sdist(sdist, tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
       '-w', str(tmp_path), sdist], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  wheels = [name for name in os.listdir(tmp_path) if name.endswith('.whl')]
  assert wheels == ['kafka_beam_stream_load-0.2.0-py3-none-any.whl']
  with zipfile.ZipFile(os.path.join(tmp_path, wheels[0])) as archive:
    names = set(archive.namelist())
  for module in MODULES:
    assert module in names, module
