"""Java classpaths for development tools, fetched by Maven into ``.jars/<name>/lib``.

Each tool has a packaging pom under ``devtools/maven/<name>/pom.xml`` that only
lists dependencies (e.g. ``kafka``: the Kafka 4.1.1 broker and tools).
:func:`fetch` runs ``mvn dependency:copy-dependencies`` for it once and
returns the directory of jars; later calls find the directory complete (a
stamp file records the pom it was made from) and return at once.  Nothing
fetched is committed: ``.jars/`` is gitignored.

Needs ``mvn`` (with a reachable repository or a warm ``~/.m2``) for the first
fetch and ``java`` to run anything; :func:`java_available` and
:func:`maven_available` tell callers (the test fixtures skip without them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from typing import Optional

__all__ = ['JarFetchError', 'REPO_ROOT', 'JARS_ROOT', 'MIN_JAVA_VERSION', 'pom_path', 'lib_dir',
           'is_prepared', 'mark_prepared', 'locked', 'run_maven', 'is_fetched', 'fetch', 'classpath', 'java_version', 'java_available',
           'maven_available', 'missing_tools']

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JARS_ROOT = os.path.join(REPO_ROOT, '.jars')
MAVEN_ROOT = os.path.join(REPO_ROOT, 'devtools', 'maven')
# Kafka 4 brokers and tools need Java 17.
MIN_JAVA_VERSION = 17
FETCH_TIMEOUT_SECS = 900
_STAMP = '.complete'


class JarFetchError(RuntimeError):
  """Maven could not fetch a tool's jars; the message holds the end of its output."""


def pom_path(name: str) -> str:
  """``devtools/maven/<name>/pom.xml``."""
  return os.path.join(MAVEN_ROOT, name, 'pom.xml')


def lib_dir(name: str) -> str:
  """Where the jars of ``name`` go: ``<repo>/.jars/<name>/lib``."""
  return os.path.join(JARS_ROOT, name, 'lib')


def _pom_digest(name: str) -> str:
  with open(pom_path(name), 'rb') as handle:
    return hashlib.sha256(handle.read()).hexdigest()


def is_prepared(name: str, made: str) -> bool:
  """Whether ``made`` (a path under ``.jars/<name>``) exists and was made from the current pom."""
  stamp = os.path.join(JARS_ROOT, name, _STAMP)
  try:
    with open(stamp, encoding='ascii') as handle:
      recorded = handle.read().strip()
  except OSError:
    return False
  return recorded == _pom_digest(name) and os.path.exists(made)


def mark_prepared(name: str) -> None:
  """Records that ``.jars/<name>`` was made from the current pom (see ``is_prepared``)."""
  with open(os.path.join(JARS_ROOT, name, _STAMP), 'w', encoding='ascii') as stamp:
    stamp.write(_pom_digest(name) + '\n')


def is_fetched(name: str) -> bool:
  """Whether ``.jars/<name>/lib`` is complete and was made from the current pom."""
  return is_prepared(name, lib_dir(name))


@contextlib.contextmanager
def locked(name: str):
  """One fetch (or build) of ``name`` at a time across processes."""
  os.makedirs(os.path.join(JARS_ROOT, name), exist_ok=True)
  with open(os.path.join(JARS_ROOT, name, '.lock'), 'w', encoding='ascii') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def run_maven(args, cwd: str = REPO_ROOT, timeout_secs: float = FETCH_TIMEOUT_SECS,
              error=None) -> None:
  """``mvn -q -B <args>``; raises ``error`` (default ``JarFetchError``) with its output's end."""
  error = error or JarFetchError
  command = ['mvn', '-q', '-B', *args]
  try:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout_secs, check=False)
  except subprocess.TimeoutExpired as expired:
    raise error(f'{" ".join(command)} did not finish in {timeout_secs:.0f}s') from expired
  if result.returncode != 0:
    output = (result.stdout + result.stderr).strip()[-3000:]
    raise error(f'{" ".join(command)} failed (exit {result.returncode}):\n{output}')


def fetch(name: str, timeout_secs: float = FETCH_TIMEOUT_SECS) -> str:
  """Returns the lib directory of ``name``, running Maven first if it is not complete.

  Maven copies the runtime dependencies of ``devtools/maven/<name>/pom.xml``
  into a fresh directory that replaces the old one only when Maven
  succeeded, so an interrupted fetch never looks complete.

  Raises:
    FileNotFoundError: there is no such pom.
    JarFetchError: Maven is missing or failed.
  """
  pom = pom_path(name)
  if not os.path.isfile(pom):
    raise FileNotFoundError(f'no pom for {name!r}: {pom}')
  if is_fetched(name):
    return lib_dir(name)
  with locked(name):
    if is_fetched(name):  # another process fetched it while we waited
      return lib_dir(name)
    if not maven_available():
      raise JarFetchError(f'mvn is not on PATH: cannot fetch the {name} jars ({pom})')
    target = lib_dir(name)
    partial = target + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    run_maven(['-f', pom, 'dependency:copy-dependencies', f'-DoutputDirectory={partial}',
               '-DincludeScope=runtime'], timeout_secs=timeout_secs)
    if not _has_jars(partial):
      raise JarFetchError(f'mvn dependency:copy-dependencies of {pom} copied no jar')
    shutil.rmtree(target, ignore_errors=True)
    os.rename(partial, target)
    mark_prepared(name)
    return target


def _has_jars(directory: str) -> bool:
  return os.path.isdir(directory) and any(f.endswith('.jar') for f in os.listdir(directory))


def classpath(name: str) -> str:
  """A ``java -cp`` value for the fetched jars of ``name`` (fetching them if needed)."""
  return os.path.join(fetch(name), '*')


def java_version() -> Optional[int]:
  """The major version of ``java`` on PATH, or None when there is none (or it does not run)."""
  if shutil.which('java') is None:
    return None
  try:
    result = subprocess.run(['java', '-version'], capture_output=True, text=True, timeout=60,
                            check=False)
  except (OSError, subprocess.TimeoutExpired):
    return None
  match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
  if result.returncode != 0 or not match:
    return None
  major = int(match.group(1))
  return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def java_available(min_version: int = MIN_JAVA_VERSION) -> bool:
  """Whether ``java`` on PATH runs and is at least ``min_version``."""
  version = java_version()
  return version is not None and version >= min_version


def maven_available() -> bool:
  """Whether ``mvn`` is on PATH."""
  return shutil.which('mvn') is not None


def missing_tools(name: str, prepared: Optional[bool] = None) -> Optional[str]:
  """Why the tool ``name`` cannot run here (no suitable Java; no Maven and no fetched jars).

  ``prepared``: whether what Maven makes for ``name`` exists (default: its jars are fetched).
  Returns None when it can.
  """
  version = java_version()
  if version is None:
    return 'java is not on PATH (the integration tests need Java and Maven)'
  if version < MIN_JAVA_VERSION:
    return f'java {version} is too old: the integration tier (Kafka 4) needs Java {MIN_JAVA_VERSION}'
  if not (is_fetched(name) if prepared is None else prepared) and not maven_available():
    return f'mvn is not on PATH and the {name} jars were never fetched (.jars/{name})'
  return None
