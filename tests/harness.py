"""Helpers to run the real pipeline against the local Kafka and Stream Load server."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from pipelines.kafka_to_doris import RunSummary, run_pipeline

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = 'secret'


def pipeline_argv(kafka, server, topics: Sequence[str], group: str, dead_letter_path: str,
                  **flags) -> List[str]:
  """The CLI flags of a bounded run (``--stop_at_end``) against the fixtures.

  ``flags`` are extra ``--name=value`` flags (``None`` values are left out),
  e.g. ``table='demo.events'`` or ``topic_table_map='a=demo.users'``.
  """
  argv = [
      f'--bootstrap_servers={kafka.bootstrap_servers}',
      f'--topics={",".join(topics)}',
      f'--group_id={group}',
      '--stop_at_end',
      f'--fe_nodes={",".join(server.fe_urls)}',
      '--user=root',
      f'--password={PASSWORD}',
      f'--dead_letter_path={dead_letter_path}',
      '--progress_interval_secs=0',
      '--max_retries=4',
  ]
  for name, value in flags.items():
    if value is not None:
      argv.append(f'--{name}={value}')
  return argv


def run_in_process(argv: Sequence[str]) -> RunSummary:
  """Runs the pipeline in this process (FnApiRunner) and returns its summary."""
  return run_pipeline(list(argv))


def run_cli(argv: Sequence[str], timeout_secs: float = 240,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
  """Runs ``python -m pipelines.kafka_to_doris`` as a user would."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  return subprocess.run([sys.executable, '-m', 'pipelines.kafka_to_doris', *argv], cwd=REPO_ROOT,
                        env=full_env, capture_output=True, text=True, timeout=timeout_secs)


def start_cli(argv: Sequence[str], env: Optional[Dict[str, str]] = None,
              log_path: Optional[str] = None) -> subprocess.Popen:
  """Starts the CLI in the background (crash tests kill it)."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  stdout = open(log_path, 'wb') if log_path else subprocess.DEVNULL
  proc = subprocess.Popen([sys.executable, '-m', 'pipelines.kafka_to_doris', *argv], cwd=REPO_ROOT,
                          env=full_env, stdout=stdout, stderr=subprocess.STDOUT)
  proc.log_path = log_path  # what a failed wait shows
  return proc


def log_tail(proc, lines: int = 40) -> str:
  """The last ``lines`` lines of a started CLI's log ('' when it has none)."""
  path = getattr(proc, 'log_path', None)
  if not path or not os.path.exists(path):
    return ''
  with open(path, encoding='utf-8', errors='replace') as handle:
    tail = handle.readlines()[-lines:]
  return f'\n--- the last {len(tail)} lines of {path}:\n' + ''.join(tail)


def read_dead_letters(path: str) -> List[dict]:
  """Every dead letter written under ``path``."""
  import glob
  import orjson
  letters = []
  for name in sorted(glob.glob(os.path.join(path, '*.jsonl'))):
    with open(name, 'rb') as handle:
      letters.extend(orjson.loads(line) for line in handle if line.strip())
  return letters
