"""A real Confluent-compatible Schema Registry on loopback: Apicurio Registry 2.0.2.Final.

The integration tests decode Avro, Protobuf and JSON Schema records against
it instead of confluent-kafka's in-process ``mock://`` registry: real HTTP,
real ids, real 404s, through Apicurio's Confluent-compatible API
(``/apis/ccompat/v6``, which confluent-kafka's ``SchemaRegistryClient``
speaks unchanged).

* :func:`build` makes ``.jars/apicurio/quarkus-app/quarkus-run.jar`` once,
  with Maven, from ``devtools/maven/apicurio/pom.xml`` (see its comment: the
  app jar from Maven Central, its own settings, Quarkus's build step); a stamp
  records the pom it was made from.  Nothing built is committed.
* :class:`SchemaRegistry` runs it on a free loopback port with the app's
  in-memory storage; ``start()`` returns when the API answers; ``url`` is the
  base URL to give ``--schema_registry_url``; ``close()`` stops the JVM (which
  the kernel also stops if this Python process dies: ``setpriv``).

Run one by hand: ``python -m devtools.registry`` prints its URL and keeps it up
until Ctrl-C.  Needs Java 17 and Maven (or a build made before).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Optional

import requests

from devtools import jars
from devtools.real_kafka import free_ports

__all__ = ['RegistryBuildError', 'RegistryStartError', 'SchemaRegistry', 'build', 'is_built',
           'missing_tools', 'APP_VERSION', 'CCOMPAT_PATH']

APP_VERSION = '2.0.2.Final'
CCOMPAT_PATH = '/apis/ccompat/v6'
_NAME = 'apicurio'
POM = jars.pom_path(_NAME)
HOME = os.path.join(jars.JARS_ROOT, _NAME)
RUN_JAR = os.path.join(HOME, 'quarkus-app', 'quarkus-run.jar')
BUILD_TIMEOUT_SECS = 900
READY_TIMEOUT_SECS = 90
_APP_JAR = os.path.join(os.path.expanduser('~'), '.m2', 'repository', 'io', 'apicurio',
                        'apicurio-registry-app', APP_VERSION,
                        f'apicurio-registry-app-{APP_VERSION}.jar')
# Quarkus must index the app jar (it has no Jandex index) and package a fast-jar.
_EXTRA_SETTINGS = """
# -- added by devtools/registry.py --
quarkus.index-dependency.registryapp.group-id=io.apicurio
quarkus.index-dependency.registryapp.artifact-id=apicurio-registry-app
%prod.quarkus.package.type=fast-jar
"""


class RegistryBuildError(jars.JarFetchError):
  """Maven could not build the registry; the message holds the end of its output."""


class RegistryStartError(RuntimeError):
  """The registry did not come up; the message holds the end of its log."""


def is_built() -> bool:
  """Whether the runnable registry exists and was built from the current pom."""
  return jars.is_prepared(_NAME, RUN_JAR)


def missing_tools() -> Optional[str]:
  """Why the registry cannot run here (Java, or Maven for a first build); None when it can."""
  return jars.missing_tools(_NAME, prepared=is_built())


def build(timeout_secs: float = BUILD_TIMEOUT_SECS) -> str:
  """Returns the runnable jar, building it first if needed (one build at a time).

  Raises:
    RegistryBuildError: Maven is missing or failed.
  """
  if is_built():
    return RUN_JAR
  with jars.locked(_NAME):
    if is_built():  # another process built it while we waited
      return RUN_JAR
    if not jars.maven_available():
      raise RegistryBuildError(f'mvn is not on PATH: cannot build the schema registry ({POM})')
    work = os.path.join(HOME, 'build')
    shutil.rmtree(work, ignore_errors=True)
    resources = os.path.join(work, 'src', 'main', 'resources')
    os.makedirs(os.path.join(resources, 'META-INF'))
    shutil.copy(POM, os.path.join(work, 'pom.xml'))
    jars.run_maven(['dependency:get', f'-Dartifact=io.apicurio:apicurio-registry-app:{APP_VERSION}',
                    '-Dtransitive=false'], work, timeout_secs, RegistryBuildError)
    with zipfile.ZipFile(_APP_JAR) as app:
      settings = app.read('application.properties').decode('utf-8')
      web_xml = app.read('META-INF/web.xml')
    with open(os.path.join(resources, 'application.properties'), 'w', encoding='utf-8') as out:
      out.write(settings + _EXTRA_SETTINGS)
    with open(os.path.join(resources, 'META-INF', 'web.xml'), 'wb') as out:
      out.write(web_xml)
    jars.run_maven(['package', '-DskipTests'], work, timeout_secs, RegistryBuildError)
    built = os.path.join(work, 'target', 'quarkus-app')
    if not os.path.isfile(os.path.join(built, 'quarkus-run.jar')):
      raise RegistryBuildError(f'the build made no {built}/quarkus-run.jar')
    shutil.rmtree(os.path.dirname(RUN_JAR), ignore_errors=True)
    shutil.move(built, os.path.dirname(RUN_JAR))
    shutil.rmtree(work, ignore_errors=True)
    jars.mark_prepared(_NAME)
  return RUN_JAR


class SchemaRegistry:
  """One Apicurio Registry JVM on 127.0.0.1 (in-memory storage).

  Args:
    work_dir: where its log goes (default: a temporary directory).
    heap_mb: the JVM's heap.
  """

  def __init__(self, work_dir: Optional[str] = None, heap_mb: int = 256):
    self._owns_dir = work_dir is None
    self.work_dir = work_dir or tempfile.mkdtemp(prefix='schema-registry-')
    self.heap_mb = heap_mb
    self.port = 0
    self._process: Optional[subprocess.Popen] = None
    self._log = None

  @property
  def url(self) -> str:
    """The Confluent-compatible base URL (``--schema_registry_url``)."""
    return f'http://127.0.0.1:{self.port}{CCOMPAT_PATH}'

  def start(self, timeout_secs: float = READY_TIMEOUT_SECS) -> 'SchemaRegistry':
    jar = build()
    self.port = free_ports(1)[0]
    command = ['java', f'-Xmx{self.heap_mb}m', '-XX:+UseSerialGC', '-XX:+ExitOnOutOfMemoryError',
               f'-Dquarkus.http.port={self.port}', '-Dquarkus.http.host=127.0.0.1',
               '-jar', jar]
    if sys.platform.startswith('linux') and shutil.which('setpriv'):
      command = ['setpriv', '--pdeathsig', 'KILL', '--'] + command
    self._log = open(os.path.join(self.work_dir, 'registry.log'), 'wb')  # pylint: disable=consider-using-with
    self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.work_dir)
    atexit.register(self.close)
    deadline = time.monotonic() + timeout_secs
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        raise RegistryStartError(f'the schema registry exited ({self._process.returncode}):\n'
                                 f'{self.log_tail()}')
      try:
        if requests.get(self.url + '/subjects', timeout=2).status_code == 200:
          return self
      except requests.RequestException:
        pass
      time.sleep(0.2)  # polling a starting JVM: there is nothing to wait on but its port
    self.close()
    raise RegistryStartError(f'the schema registry did not answer in {timeout_secs:.0f}s:\n'
                             f'{self.log_tail()}')

  def log_tail(self, lines: int = 40) -> str:
    try:
      with open(os.path.join(self.work_dir, 'registry.log'), encoding='utf-8',
                errors='replace') as handle:
        return ''.join(handle.readlines()[-lines:])
    except OSError:
      return '(no log)'

  def close(self) -> None:
    process, self._process = self._process, None
    if process is not None and process.poll() is None:
      process.terminate()
      try:
        process.wait(timeout=15)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if self._log is not None:
      self._log.close()
      self._log = None
    if self._owns_dir:
      shutil.rmtree(self.work_dir, ignore_errors=True)

  def __enter__(self) -> 'SchemaRegistry':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.close()


def main() -> None:
  parser = argparse.ArgumentParser(description='Runs a real schema registry until Ctrl-C.')
  parser.parse_args()
  with SchemaRegistry() as registry:
    print(f'schema registry (Apicurio {APP_VERSION}, Confluent-compatible API): {registry.url}',
          flush=True)
    try:
      while True:
        time.sleep(3600)
    except KeyboardInterrupt:
      pass


if __name__ == '__main__':
  main()
