"""``FeProbe``: a readiness probe -- does an FE answer?

Doris's and StarRocks's FEs answer ``GET /api/health`` without credentials;
any answer below 500 from one of the configured FEs is ready.
"""

from __future__ import annotations

from typing import Tuple

import requests

from transforms.stream_load.config import StreamLoadConfig

__all__ = ['FeProbe']


class FeProbe:
  """Asks each FE for ``/api/health`` until one answers (picklable: the config only)."""

  def __init__(self, config: StreamLoadConfig, timeout_secs: float = 5.0):
    self._fe_nodes = tuple(config.fe_nodes)
    self._verify = config.verify
    self._timeout_secs = timeout_secs

  def __call__(self) -> Tuple[bool, str]:
    errors = []
    for fe in self._fe_nodes:
      try:
        response = requests.get(f'{fe}/api/health', timeout=self._timeout_secs,
                                verify=self._verify)
      except requests.RequestException as error:
        errors.append(f'{fe}: {type(error).__name__}')
        continue
      if response.status_code < 500:
        return True, f'{fe} answers'
      errors.append(f'{fe}: HTTP {response.status_code}')
    return False, 'no FE answers (' + '; '.join(errors) + ')'
