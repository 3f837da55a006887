"""Beam's Prism runner, built from the Go module proxy, for the integration tier.

Prism is Beam's portable reference runner (Go): ``--runner=PrismRunner
--prism_location=<binary> --environment_type=LOOPBACK`` runs the job with its
own job service and the Python SDK worker in the launcher, and starts in
about a second -- a quick second portable runner beside Flink.  The Python
SDK would download a release binary from GitHub; here :func:`prism_binary`
builds it once with ``go install github.com/apache/beam/sdks/v2/go/cmd/prism``
at the installed SDK's version (about 80 s and 200 MB of modules the first
time) into ``.jars/prism/bin`` (gitignored).  ``python -m devtools.prism``
builds it and prints its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from devtools import jars

__all__ = ['prism_binary', 'missing_tools', 'PrismBuildError']

_NAME = 'prism'
_MODULE = 'github.com/apache/beam/sdks/v2/go/cmd/prism'
BUILD_TIMEOUT_SECS = 900


class PrismBuildError(RuntimeError):
  """``go install`` could not build Prism; the message holds the end of its output."""


def _version() -> str:
  from apache_beam.version import __version__  # pylint: disable=import-outside-toplevel
  return __version__


def _binary_path() -> str:
  return os.path.join(jars.JARS_ROOT, _NAME, f'bin-{_version()}', 'prism')


def missing_tools() -> str:
  """Why Prism cannot be built here ('' when it can, or when it was built before)."""
  if os.path.exists(_binary_path()) or shutil.which('go'):
    return ''
  return 'the Go toolchain (go) is not installed: Prism is built from the Go module proxy'


def prism_binary() -> str:
  """The path of the Prism binary for the installed SDK's version (building it the first time).

  Raises:
    PrismBuildError: ``go install`` failed.
  """
  path = _binary_path()
  if os.path.exists(path):
    return path
  with jars.locked(_NAME):
    if os.path.exists(path):
      return path
    bin_dir = os.path.dirname(path)
    os.makedirs(bin_dir, exist_ok=True)
    env = dict(os.environ, GOBIN=bin_dir, CGO_ENABLED='0')
    try:
      result = subprocess.run(['go', 'install', f'{_MODULE}@v{_version()}'], env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECS,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
      raise PrismBuildError(f'go install {_MODULE}: {error}') from None
    if result.returncode != 0 or not os.path.exists(path):
      raise PrismBuildError(f'go install {_MODULE}@v{_version()} failed: '
                            f'{(result.stdout + result.stderr)[-2000:]}')
  return path


if __name__ == '__main__':
  print(prism_binary())
  sys.exit(0)
