"""pipelines.process_tuning: the job keeps freed memory (glibc) and collects garbage rarely."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

# Allocates ~200 MB in 1 KB objects (above pymalloc's limit: glibc's malloc), frees them,
# prints how many MB of RSS the free gave back to the kernel.
_PROBE = '''
import sys
sys.path.insert(0, {root!r})
from pipelines.process_tuning import tune_allocator
applied = tune_allocator() if {tune} else False

import os
STATM = os.open('/proc/self/statm', os.O_RDONLY)

def rss_mb():  # small objects only (pymalloc): nothing lands on top of the freed memory
  return int(os.pread(STATM, 200, 0).split()[1]) * 4096 / 2**20

rss_mb()

objects = [bytes(1024) for _ in range(200_000)]
before = rss_mb()
del objects
if {trim}:
  from pipelines.process_tuning import PeriodicTrim
  PeriodicTrim().trim_now()
print(applied, before - rss_mb())
'''


def _returned_mb(tune: bool, trim: bool = False, **env) -> tuple:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  environment = {k: v for k, v in os.environ.items() if not k.startswith('MALLOC_')}
  environment.update(env)
  out = subprocess.run([sys.executable, '-c', _PROBE.format(root=root, tune=tune, trim=trim)],
                       capture_output=True, text=True, check=True, env=environment).stdout
  applied, returned = out.split()
  return applied == 'True', float(returned)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings')
def test_the_job_keeps_freed_memory_instead_of_faulting_it_in_again():
  applied, returned = _returned_mb(tune=False)
  assert not applied and returned > 100  # glibc's default: the free pages go back
  applied, returned = _returned_mb(tune=True)
  assert applied and returned < 20       # tuned: kept for the next batches


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc_trim')
def test_the_periodic_trim_hands_what_a_burst_kept_back_to_the_kernel():
  applied, returned = _returned_mb(tune=True, trim=True)
  assert applied and returned > 100


def test_the_periodic_trim_trims_every_interval_until_stopped():
  import threading  # pylint: disable=import-outside-toplevel
  from pipelines.process_tuning import PeriodicTrim  # pylint: disable=import-outside-toplevel
  calls = []
  third = threading.Event()

  def trim():
    calls.append(1)
    if len(calls) == 3:
      third.set()
    return 1

  trimming = PeriodicTrim(trim, interval_secs=0.01).start()
  assert third.wait(30)
  trimming.stop()
  assert trimming.trims >= 3


def test_the_periodic_trim_collects_cyclic_garbage_first():
  """With the rare collections the job runs with, garbage cycles (Beam makes classes per bundle)
  piled up between full collections: the soak's RSS crept ~1 MB a minute after a burst."""
  import gc  # pylint: disable=import-outside-toplevel
  import weakref  # pylint: disable=import-outside-toplevel
  from pipelines.process_tuning import PeriodicTrim  # pylint: disable=import-outside-toplevel

  class _Cycle:
    pass

  was = gc.isenabled()
  gc.disable()
  try:
    cycle = _Cycle()
    cycle.me = cycle
    alive = weakref.ref(cycle)
    del cycle
    order = []
    PeriodicTrim(lambda: order.append('trim') or 1).trim_now()
    assert alive() is None  # collected by the trim's full collection
    PeriodicTrim(lambda: order.append('trim') or 1,
                 collect=lambda: order.append('collect') or 0).trim_now()
    assert order == ['trim', 'collect', 'trim']
  finally:
    if was:
      gc.enable()


def test_the_users_own_glibc_settings_win():
  applied, returned = _returned_mb(tune=True, MALLOC_TRIM_THRESHOLD_='131072')
  assert not applied and returned > 100


def test_a_local_run_collects_garbage_rarely():
  """The job's process gets the GC thresholds the README states (default: 700, 10, 10)."""
  probe = (
      'import gc, sys\n'
      f'sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))!r})\n'
      'from pipelines.process_tuning import tune_process\n'
      'before = gc.get_threshold()\n'
      'applied = tune_process()\n'
      'print(before, gc.get_threshold(), applied["gc"])\n')
  out = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                       check=True).stdout.strip()
  assert out == '(700, 10, 10) (50000, 20, 100) True'
