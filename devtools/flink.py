"""Beam's Flink job server for the integration tier, from Maven coordinates.

``beam-runners-flink-1.19-job-server`` (the uber jar Beam's ``FlinkRunner``
downloads) is not served by the Maven mirror here, but the runner it is built
from is: ``devtools/maven/flink/pom.xml`` fetches ``beam-runners-flink-1.19``
2.70.0 and its dependencies (``beam-runners-java-job-service`` at 2.65.0, the
newest served).  :func:`job_server_jar` writes a *pathing jar* beside them: a
jar holding only a manifest whose ``Main-Class`` is ``FlinkJobServerDriver``
and whose ``Class-Path`` lists the fetched jars, so that
``--runner=FlinkRunner --flink_job_server_jar=<it> --flink_master=[local]``
starts an embedded Flink exactly as with the uber jar (``java -jar``).

Tested here with the apache-beam 2.78 Python SDK (``setup.py``'s ``BEAM_VERSION``) against
this 2.70 job server, environments LOOPBACK and EXTERNAL (templates/flink/README.md).
"""

from __future__ import annotations

import os
import zipfile

from devtools import jars

__all__ = ['job_server_jar', 'JOB_SERVER_MAIN', 'BEAM_RUNNER_VERSION', 'FLINK_VERSION']

JOB_SERVER_MAIN = 'org.apache.beam.runners.flink.FlinkJobServerDriver'
BEAM_RUNNER_VERSION = '2.70.0'
FLINK_VERSION = '1.19'
_NAME = 'flink'
_MANIFEST_LINE_BYTES = 72


def _manifest(main_class: str, class_path: str) -> bytes:
  """A jar manifest: lines of at most 72 bytes, continuations start with a space."""
  lines = []
  for line in ('Manifest-Version: 1.0', f'Main-Class: {main_class}', f'Class-Path: {class_path}'):
    data = line.encode('utf-8')
    lines.append(data[:_MANIFEST_LINE_BYTES])
    data = data[_MANIFEST_LINE_BYTES:]
    while data:
      lines.append(b' ' + data[:_MANIFEST_LINE_BYTES - 1])
      data = data[_MANIFEST_LINE_BYTES - 1:]
  return b'\r\n'.join(lines) + b'\r\n\r\n'


def job_server_jar() -> str:
  """The path of the Flink job server's pathing jar (fetching its jars the first time).

  Raises:
    devtools.jars.JarFetchError: Maven could not fetch them.
  """
  lib = jars.fetch(_NAME)
  path = os.path.join(os.path.dirname(lib), 'job-server.jar')
  entries = sorted(name for name in os.listdir(lib) if name.endswith('.jar'))
  manifest = _manifest(JOB_SERVER_MAIN, ' '.join(f'lib/{name}' for name in entries))
  if os.path.exists(path):
    with zipfile.ZipFile(path) as existing:
      if existing.read('META-INF/MANIFEST.MF') == manifest:
        return path
  partial = path + '.partial'
  with zipfile.ZipFile(partial, 'w') as jar:
    jar.writestr('META-INF/MANIFEST.MF', manifest)
  os.replace(partial, path)
  return path


if __name__ == '__main__':
  print(job_server_jar())
