"""The command line checked before Beam reads it: an unknown flag or a bad value fails the start.

Beam itself only logs an unknown flag ("Discarding unparseable args") and runs with the default,
so ``--batch_rowz=50000`` would load in batches of 10,000 -- and a bad value makes argparse print
its 70-line usage block.  Here every flag must be one of the loader's (``pipelines.options``), one
of Beam's Python pipeline options, or -- with ``--runner=FlinkRunner`` or ``PortableRunner`` --
one of the Java Flink runner's own options (``FLINK_RUNNER_FLAGS``: Beam hands those to the job
server, which the Python SDK does not describe).  Anything else fails with the closest known
flag as a suggestion; a bad value is one line naming the flag.
"""

from __future__ import annotations

import difflib
from typing import List, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipelines.config import ConfigurationError
# Imported for its PipelineOptions subclass: the loader's flags are known from here on.
from pipelines.options import KafkaToDorisOptions  # noqa: F401  pylint: disable=unused-import

__all__ = ['check_flags', 'FLINK_RUNNER_FLAGS']

# org.apache.beam.runners.flink.FlinkPipelineOptions (Beam 2.70), in Python's spelling; the ones
# Python's FlinkRunnerOptions also defines (flink_master, parallelism, ...) are known anyway.
FLINK_RUNNER_FLAGS = frozenset({
    'checkpointing_interval', 'checkpointing_mode', 'checkpoint_timeout_millis',
    'min_pause_between_checkpoints', 'num_concurrent_checkpoints', 'fail_on_checkpointing_errors',
    'finish_bundle_before_checkpointing', 'unaligned_checkpoint_enabled',
    'force_unaligned_checkpoint_enabled', 'shutdown_sources_after_idle_ms',
    'number_of_execution_retries', 'job_check_interval_in_secs', 'attached_mode',
    'execution_retry_delay', 'object_reuse', 'operator_chaining', 'state_backend',
    'state_backend_storage_path', 'disable_metrics',
    'retain_externalized_checkpoints_on_cancellation', 'max_bundle_size', 'max_bundle_time_mills',
    'latency_tracking_interval', 'auto_watermark_interval', 'execution_mode_for_batch',
    'savepoint_path', 'allow_non_restored_state', 'report_checkpoint_duration',
    're_iterable_group_by_key_result', 'faster_copy', 'flink_conf_dir',
    'file_input_split_max_size_m_b', 'enable_stable_input_drain', 'force_slot_sharing_group',
    'use_data_stream_for_batch',
})
_JAVA_FLINK_RUNNERS = ('FlinkRunner', 'PortableRunner')


class _Parser(_BeamArgumentParser):
  """Beam's parser, but a bad value raises one line instead of printing the usage and exiting."""

  def error(self, message):
    raise ConfigurationError(message.replace('argument ', '', 1))


def _parser() -> _Parser:
  parser = _Parser(allow_abbrev=False, add_help=False)
  # As Beam's PipelineOptions.get_all_options does: every options class known in this process.
  for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  return parser


def _runner_name(runner) -> str:
  if runner is None:
    return 'DirectRunner'
  name = runner if isinstance(runner, str) else type(runner).__name__
  return name.rsplit('.', 1)[-1]


def check_flags(argv: Sequence[str]) -> None:
  """Fails on a flag no one knows and on a value its flag does not take.

  Raises:
    ConfigurationError: one line, naming every unknown flag (with the closest known one) or the
      flag whose value is bad.
  """
  parser = _parser()
  known, unknown = parser.parse_known_args(list(argv))
  runner = _runner_name(getattr(known, 'runner', None))
  allowed = FLINK_RUNNER_FLAGS if runner in _JAVA_FLINK_RUNNERS else frozenset()
  known_names = sorted({option[2:] for action in parser._actions  # pylint: disable=protected-access
                        for option in action.option_strings if option.startswith('--')})
  problems: List[str] = []
  index = 0
  while index < len(unknown):
    arg = unknown[index]
    index += 1
    if not arg.startswith('--'):
      problems.append(f'{arg!r} is not a flag (flags are written --name=value)')
      continue
    name = arg[2:].split('=', 1)[0]
    if name in allowed:
      if '=' not in arg and index < len(unknown) and not unknown[index].startswith('-'):
        index += 1  # its value, written apart
      continue
    problems.append(_unknown(name, known_names, runner))
  if problems:
    raise ConfigurationError('; '.join(problems) + ' (--help lists the flags)')


def _unknown(name: str, known_names: List[str], runner: str) -> str:
  if name in FLINK_RUNNER_FLAGS:
    return (f'--{name} is an option of the Flink runner; it has no effect with --runner={runner} '
            '(give --runner=FlinkRunner)')
  close = difflib.get_close_matches(name, known_names, n=1, cutoff=0.75)
  hint = f' (did you mean --{close[0]}?)' if close else ''
  return f'unknown flag --{name}{hint}'
