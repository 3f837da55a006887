"""pipelines.local_runner_metrics: the local runner keeps no per-bundle metrics over a long run."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.transform

# A read that defers after every position: each call is a bundle of its own on the FnApiRunner.
# At each call it counts the runner's pending metric folds (generators of consolidate) alive.
_PROBE = textwrap.dedent('''
    import gc, inspect, sys
    sys.path.insert(0, {root!r})
    import apache_beam as beam
    from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.core import RestrictionProvider
    if {fix}:
      from pipelines.local_runner_metrics import bound_runner_metrics
      assert bound_runner_metrics()

    sys.folds = []  # on a module: the runner's copy of the DoFn appends to this very list

    class Provider(RestrictionProvider):
      def initial_restriction(self, element):
        return OffsetRange(0, {bundles})
      def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)
      def restriction_size(self, element, restriction):
        return restriction.size()

    class OnePerBundle(beam.DoFn):
      def process(self, element, tracker=beam.DoFn.RestrictionParam(Provider())):
        position = tracker.current_restriction().start
        if tracker.try_claim(position):
          sys.folds.append(sum(1 for o in gc.get_objects()
                           if inspect.isgenerator(o) and o.gi_code.co_name == 'consolidate'))
          yield position
          tracker.defer_remainder()

    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions()) as p:
      _ = p | beam.Create([0]) | beam.ParDo(OnePerBundle()) | beam.Map(lambda x: x)
    print(len(sys.folds), max(sys.folds))
''')


def _folds(fix: bool, bundles: int = 120):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run([sys.executable, '-c', _PROBE.format(root=root, fix=fix,
                                                                bundles=bundles)],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  calls, most = map(int, result.stdout.split())
  assert calls == bundles
  return most


def test_beams_runner_alone_keeps_a_fold_per_bundle():
  # The defect the fix is for: without it the pending folds grow with the bundles run.
  assert _folds(fix=False) >= 100


def test_with_the_fix_the_runner_keeps_none_whatever_the_bundles():
  assert _folds(fix=True) <= 2


def test_the_fix_is_applied_once_and_keeps_the_values():
  from apache_beam.metrics import monitoring_infos  # pylint: disable=import-outside-toplevel
  from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=import-outside-toplevel
  from pipelines.local_runner_metrics import bound_runner_metrics  # pylint: disable=import-outside-toplevel
  assert bound_runner_metrics() and bound_runner_metrics()
  fold = fn_runner.consolidate_monitoring_infos
  a = monitoring_infos.int64_user_counter('ns', 'rows', 3, ptransform='t')
  b = monitoring_infos.int64_user_counter('ns', 'rows', 4, ptransform='t')
  merged = fold([a, b])
  assert isinstance(merged, list) and len(merged) == 1
  assert monitoring_infos.extract_counter_value(merged[0]) == 7
