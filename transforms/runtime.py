"""Where a pipeline runs: the local runner's in-process worker, or a portable runner.

Several transforms have two implementations.  On the FnApiRunner with its
in-process worker (``--runner=DirectRunner`` here) everything after the Kafka
read fuses into one stage that runs in this process, so the batcher and the
sink keep their work in memory across bundles and see the read finish; on
portable runners (Flink, Dataflow, Prism, a job service) they use Beam state
and timers and finish their work within each bundle, as the model requires.
"""

from __future__ import annotations

__all__ = ['runs_in_process']


def runs_in_process(pipeline) -> bool:
  """True if ``pipeline`` runs on the FnApiRunner with its in-process worker."""
  from apache_beam.options.pipeline_options import DirectOptions  # pylint: disable=import-outside-toplevel
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
  if not isinstance(pipeline.runner, FnApiRunner):
    return False
  return pipeline.options.view_as(DirectOptions).direct_running_mode == 'in_memory'
