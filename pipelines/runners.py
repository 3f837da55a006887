"""What each runner needs from the launcher: flags it sets, the local runner, where workers run.

The loader runs fused behind its read on every runner (``transforms.runtime``);
a few runner settings follow from that, and the launcher sets them unless the
user did, saying so:

* **Flink, streaming** (no ``--stop_at_end``): ``--streaming`` (Flink's batch
  mode cannot run an unbounded read); ``--finish_bundle_before_checkpointing``
  (a checkpoint is taken between bundles, never with a bundle's output
  half-buffered); ``--shutdown_sources_after_idle_ms`` = never.  Once Beam's
  impulse source has shut down, Flink's operator behind it loops over the
  read's pending resumptions without waiting for their time and takes no
  checkpoint any more (Beam shuts it down after 0 ms when checkpointing is off).
  So the job does not end by itself after a drain: the launcher waits until
  every read reported its end, then cancels it (``pipelines.kafka_to_doris``).
* **Flink, bounded** (``--stop_at_end``): ``--shutdown_sources_after_idle_ms=0``,
  so the job ends once the reads are done (also in streaming mode).
* **Flink, local** (``--flink_master=[local]``/``[auto]``) with
  ``--environment_type=EXTERNAL`` or ``PROCESS`` and ``--parallelism`` > 1:
  ``--sdk_worker_parallelism`` = 3 x the parallelism.  Beam's Flink runner
  hands each (stage, subtask) a Python worker round-robin from that many;
  the graph has three Python stages (resolving the partitions, splitting the
  read, the read with everything fused behind it), so with three per subtask
  each reading subtask gets a process -- and a core -- of its own (one
  process shares one core: the GIL).  The other two stages' workers idle.
* **Every portable runner**: an unbounded read is a streaming job.

``--runner=DirectRunner`` (the default) runs on Beam's FnApiRunner with its
in-process worker: the DirectRunner would pick the BundleBasedDirectRunner for
a pipeline with timers, and that runner cannot run an unbounded splittable
DoFn.
"""

from __future__ import annotations

import logging
from typing import List, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions,
                                                  PipelineOptions, PortableOptions,
                                                  StandardOptions)

from pipelines.options import KafkaToDorisOptions
from transforms.kafka.discovery import DEFAULT_DISCOVERY_SHARDS

__all__ = ['prepare_argv', 'make_pipeline', 'runs_locally', 'workers_run_here',
           'discovery_shards', 'DIRECT_RUNNERS', 'PYTHON_STAGES']

_LOGGER = logging.getLogger(__name__)

DIRECT_RUNNERS = (None, 'DirectRunner', 'direct', 'FnApiRunner')
_FLINK_RUNNERS = ('FlinkRunner', 'flink')
_LOCAL_FLINK = ('[local]', '[auto]')
# Flink's longest wait: Beam's impulse source is never shut down (Long.MAX_VALUE).
_NEVER_MS = 2 ** 63 - 1
_LOOPS_PER_WORKER = 8
# Stages of Python DoFns Flink makes of the graph: Impulse -> ResolvePartitions | Reshuffle ->
# the read's split | the read and everything fused behind it (one shuffle, the SDF's keyBy).
PYTHON_STAGES = 3


def _runner(options: PipelineOptions):
  runner = options.view_as(StandardOptions).runner
  return runner if isinstance(runner, str) or runner is None else type(runner).__name__


def runs_locally(options: PipelineOptions) -> bool:
  """The local runner (the FnApiRunner here)."""
  return _runner(options) in DIRECT_RUNNERS


def workers_run_here(options: PipelineOptions) -> bool:
  """Whether the pipeline's DoFns run in this process (the local runner, or LOOPBACK)."""
  if runs_locally(options):
    return True
  portable = options.view_as(PortableOptions)
  environment = (portable.environment_type or '').upper()
  if not environment and _runner(options) in _FLINK_RUNNERS:
    return options.view_as(FlinkRunnerOptions).flink_master in _LOCAL_FLINK  # Beam's default
  return environment == 'LOOPBACK'


def _given(argv: Sequence[str], name: str) -> bool:
  flag = f'--{name}'
  return any(arg == flag or arg.startswith(flag + '=') for arg in argv)


def prepare_argv(argv: Sequence[str]) -> List[str]:
  """``argv`` with the runner settings the loader needs (see the module docstring)."""
  argv = list(argv)
  options = PipelineOptions(argv)
  if runs_locally(options):
    return argv
  added: List[str] = []
  streaming = not options.view_as(KafkaToDorisOptions).stop_at_end
  if streaming and not options.view_as(StandardOptions).streaming:
    added.append('--streaming')
  if _runner(options) in _FLINK_RUNNERS:
    if streaming and not _given(argv, 'finish_bundle_before_checkpointing'):
      added.append('--finish_bundle_before_checkpointing')
    if not _given(argv, 'shutdown_sources_after_idle_ms'):
      added.append(f'--shutdown_sources_after_idle_ms={_NEVER_MS if streaming else 0}')
    flink = options.view_as(FlinkRunnerOptions)
    environment = (options.view_as(PortableOptions).environment_type or '').upper()
    if (flink.flink_master in _LOCAL_FLINK and environment in ('EXTERNAL', 'PROCESS')
        and (flink.parallelism or 1) > 1 and not _given(argv, 'sdk_worker_parallelism')):
      added.append(f'--sdk_worker_parallelism={PYTHON_STAGES * flink.parallelism}')
  if added:
    _LOGGER.info('runner settings the loader needs, added: %s', ' '.join(added))
  return argv + added


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
  """A pipeline on the requested runner; DirectRunner means the FnApiRunner here."""
  if runs_locally(options):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != 'in_memory':
      _LOGGER.warning('--direct_running_mode=%s is not supported: the batcher and the sink keep '
                      'their work in this process; running in_memory', direct.direct_running_mode)
      direct.direct_running_mode = 'in_memory'
    return beam.Pipeline(runner=FnApiRunner(), options=options)
  return beam.Pipeline(options=options)


def discovery_shards(options: PipelineOptions) -> int:
  """Discovery loops of a streaming read: a few per worker, so found partitions spread."""
  if runs_locally(options):
    return 1
  parallelism = options.view_as(FlinkRunnerOptions).parallelism
  if parallelism and parallelism > 0:
    return _LOOPS_PER_WORKER * parallelism
  return DEFAULT_DISCOVERY_SHARDS
