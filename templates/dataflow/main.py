"""Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The template launcher runs this file with the template's parameters as
``--name=value`` flags plus the Dataflow options (``--runner``, ``--project``,
``--region``, ``--temp_location``, ``--setup_file`` ...).  It builds the same
graph as ``python -m pipelines.kafka_to_doris`` (``build_pipeline``) and
submits it *without* waiting: a Flex Template launcher must exit after
``run()``, and ``pipelines.kafka_to_doris.run`` waits for the job to finish.
An unbounded read (no ``--stop_at_end``) turns on ``--streaming``.
"""

from __future__ import annotations

import logging
import sys
from typing import List, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.assembly import build_pipeline, run_context, start_up
from pipelines.config import ConfigurationError, PipelineConfig
from pipelines.options import KafkaToDorisOptions
from pipelines.preflight import PreflightError
from pipelines.runners import discovery_shards, prepare_argv
from transforms.stream_load import StreamLoadError

_LOGGER = logging.getLogger(__name__)


def make_options(argv: Sequence[str]) -> PipelineOptions:
  """Parses the launcher's flags; an unbounded read runs as a streaming job."""
  options = PipelineOptions(prepare_argv(argv))
  if not options.view_as(KafkaToDorisOptions).stop_at_end:
    options.view_as(StandardOptions).streaming = True
  return options


def submit(argv: Sequence[str]) -> beam.runners.runner.PipelineResult:
  """Validates the flags, runs the start-up checks and the journal's recovery, submits.

  Returns without waiting for the job (on the DirectRunner, ``run()`` itself
  runs a bounded job to its end).

  Raises:
    ConfigurationError, PreflightError, StreamLoadError: before anything is
      submitted.
  """
  options = make_options(argv)
  config = PipelineConfig.from_options(options)
  start_up(config)  # the checks, and the journal settled (each worker recovers its own view)
  p = beam.Pipeline(options=options)
  build_pipeline(p, config, context=run_context(config),
                 discovery_shards=discovery_shards(options))
  return p.run()


def main(argv: Optional[List[str]] = None) -> int:
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
  try:
    result = submit(sys.argv[1:] if argv is None else argv)
  except (ConfigurationError, PreflightError, StreamLoadError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  _LOGGER.info('submitted; the launcher exits now (state: %s)', result.state)
  return 0


if __name__ == '__main__':
  sys.exit(main())
