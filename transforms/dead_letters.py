"""``WriteDeadLetters``: durable dead letters, then their offsets acknowledged.

Dead letters are written as JSON lines (one file per bundle, through Beam's
``FileSystems``, so a local directory and ``gs://`` both work) before their
Kafka offsets are acknowledged to ``CommitOffsets``: a record's offset is
committed only once it is loaded *or* its dead letter is on disk.  Rejected
rows (filtered by the server within ``max_filter_ratio``) are written for the
record but not acknowledged again: their batch was loaded and acknowledged.

A ``DeadLetterBudget`` bounds how many: past it, the writer fails its bundle
before writing or acknowledging anything, so the job stops (a bounded run
fails, a streaming one stops reading) and no offset moves past the budget --
as Kafka Connect's ``errors.tolerance=none`` and Routine Load's
``max_error_number`` stop rather than skip a whole topic of bad records.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import logging
import threading
import uuid
from typing import Deque, Dict, List, Optional, Tuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.errors import RowsOverBudget
from transforms.runtime import RunContext, acquire, release
from transforms.types import DeadLetter, OffsetAck

__all__ = ['WriteDeadLetters', 'dead_letter_to_json', 'reason_code', 'ACKED_STAGES',
           'DeadLetterBudget', 'DeadLetterBudgetExceeded', 'BudgetWindow',
           'DEFAULT_MAX_DEAD_LETTER_RATIO']

_LOGGER = logging.getLogger(__name__)
ACKED_STAGES = ('parse', 'load')
DEFAULT_MAX_DEAD_LETTER_RATIO = 0.1


@dataclasses.dataclass(frozen=True)
class DeadLetterBudget:
  """How many dead letters a worker accepts before the job stops.

  Over the last ``window_records`` records a worker read, at most ``max_ratio`` of them may end
  in dead letters once there are ``min_letters`` or more of them (a few bad records in a small
  run never stop it). ``max_ratio=1`` never stops.
  """
  max_ratio: float = DEFAULT_MAX_DEAD_LETTER_RATIO
  window_records: int = 10_000
  min_letters: int = 100

  def __post_init__(self):
    if not 0.0 <= self.max_ratio <= 1.0:
      raise ValueError(f'--max_dead_letter_ratio: must be between 0 and 1, got {self.max_ratio}')
    if self.window_records < 1 or self.min_letters < 1:
      raise ValueError('a dead-letter budget needs a window and a minimum of at least 1')


class DeadLetterBudgetExceeded(RowsOverBudget):
  """Too many records went to dead letters: the rows' fault, but too many to skip."""


class BudgetWindow:
  """The dead letters among the last records a worker read, against a budget (no Beam)."""

  def __init__(self, budget: DeadLetterBudget):
    self._budget = budget
    self._lock = threading.Lock()
    self._dead = 0
    self._marks: Deque[Tuple[int, int]] = collections.deque([(0, 0)])  # (read, dead) totals

  def add(self, records_read: int, letters: int) -> Optional[str]:
    """``letters`` more dead letters, ``records_read`` records read so far by the worker.

    Returns:
      Why the budget is exceeded, or None.
    """
    budget = self._budget
    with self._lock:
      self._dead += letters
      marks = self._marks
      # The base: the oldest earlier check within the window (else the newest before it).
      while len(marks) > 1 and marks[0][0] < records_read - budget.window_records:
        marks.popleft()
      read = max(records_read - marks[0][0], 1)
      dead = self._dead - marks[0][1]
      marks.append((records_read, self._dead))
    if budget.max_ratio >= 1.0 or dead < budget.min_letters or dead <= budget.max_ratio * read:
      return None
    return (f'{dead} of the last {read} records read ({dead / read:.0%}) went to dead letters, '
            f'over --max_dead_letter_ratio={budget.max_ratio:g}')


def reason_code(letter: DeadLetter) -> str:
  """The stable code of a dead letter's reason (``invalid_json``, ``data_quality``, ...)."""
  if letter.stage == 'rejected':
    return 'rejected'
  return letter.reason.split(':', 1)[0].strip()[:40] or 'unknown'


def dead_letter_to_json(letter: DeadLetter) -> bytes:
  """One dead letter as a JSON line (payload as text when it is UTF-8, else base64)."""
  payload = letter.payload
  record = {
      'stage': letter.stage,
      'reason': letter.reason,
      'topic': letter.topic,
      'partition': letter.partition,
      'offset': letter.offset,
      'table': letter.table,
  }
  if payload is not None:
    try:
      record['payload'] = payload.decode('utf-8')
    except UnicodeDecodeError:
      record['payload_base64'] = base64.b64encode(payload).decode('ascii')
  return orjson.dumps(record) + b'\n'


class _WriteDeadLettersFn(beam.DoFn):

  def __init__(self, path: str, context: Optional[RunContext],
               budget: Optional[DeadLetterBudget]):
    self._path = path.rstrip('/')
    self._context = context
    self._budget = budget
    self._written = Metrics.counter(metrics.NAMESPACE, 'dead_letters_written')

  def teardown(self):
    if self._runtime is not None:
      release(self._runtime)

  def setup(self):
    self._runtime = acquire(self._context) if self._context is not None else None
    if not FileSystems.exists(self._path):
      try:
        FileSystems.mkdirs(self._path)
      except IOError:
        # Another writer (the parser's and the sink's share the directory) made it first.
        if not FileSystems.exists(self._path):
          raise

  def start_bundle(self):
    self._letters: List[DeadLetter] = []

  def process(self, letter: DeadLetter):
    self._letters.append(letter)

  def finish_bundle(self):
    if not self._letters:
      return
    letters, self._letters = self._letters, []
    self._check_budget(letters)
    name = FileSystems.join(self._path, f'dead-letters-{uuid.uuid4().hex}.jsonl')
    with FileSystems.create(name) as handle:
      handle.write(b''.join(dead_letter_to_json(letter) for letter in letters))
    self._written.inc(len(letters))
    if self._runtime is not None:
      self._runtime.monitor.count('dead_letters', len(letters))
    reasons: Dict[str, int] = {}
    for letter in letters:
      reasons[letter.reason[:80]] = reasons.get(letter.reason[:80], 0) + 1
      metrics.DEAD_LETTERS.labels(letter.table or '', reason_code(letter)).inc()
    _LOGGER.warning('dead letters: %d written to %s (%s)', len(letters), name,
                    '; '.join(f'{n} x {r}' for r, n in sorted(reasons.items())[:5]))
    acks: Dict[Tuple[str, int], List[int]] = {}
    for letter in letters:
      if letter.stage in ACKED_STAGES and letter.topic is not None and letter.offset is not None:
        acks.setdefault((letter.topic, letter.partition), []).append(letter.offset)
    for (topic, partition), offsets in acks.items():
      yield WindowedValue(OffsetAck(topic, partition, tuple(offsets)), MIN_TIMESTAMP,
                          [GlobalWindow()])

  def _check_budget(self, letters: List[DeadLetter]) -> None:
    """Fails the bundle -- nothing written, no offset acknowledged -- past the budget."""
    if self._budget is None or self._runtime is None:
      return
    window = self._runtime.shared('dead_letters.budget', lambda: BudgetWindow(self._budget))
    records = sum(1 for letter in letters if letter.stage in ACKED_STAGES)  # not rejected rows
    why = window.add(self._runtime.monitor.counts().get('records_read', 0), records)
    if why is None:
      return
    reasons = collections.Counter(reason_code(letter) for letter in letters)
    example = next(letter for letter in letters if reason_code(letter) == reasons.most_common(1)[0][0])
    error = DeadLetterBudgetExceeded(
        f'{why}; most of them: {reasons.most_common(1)[0][1]} x {example.reason[:200]} '
        f'({example.topic}[{example.partition}] offset {example.offset}). Nothing of them is '
        'committed: fix the cause (a flag such as --cdc_format or --format, the table, the '
        'producer) and start the job again, which resumes at them; or raise '
        '--max_dead_letter_ratio to write them to dead letters and go on')
    _LOGGER.error('dead letters: stopping: %s', error)
    self._runtime.fail(error)
    raise error


class WriteDeadLetters(beam.PTransform):
  """Writes ``DeadLetter``s as JSON lines under ``path``; emits ``OffsetAck``s.

  Takes one PCollection or a tuple of them; for a tuple it writes each input
  on its own and returns a tuple of ack PCollections (not flattened: the
  FnApiRunner holds a multi-input Flatten's output until every input is
  finished, which in a streaming run would hold the acks -- and so every
  offset commit after the first bad record -- until the run ends).

  Args:
    path: a directory (local or any Beam filesystem, e.g. ``gs://bucket/dl``).
    context: the run, whose progress line counts the dead letters.
    budget: past it the job stops (``DeadLetterBudget``); None: no limit. Needs ``context``
      (the records read are counted there).
  """

  def __init__(self, path: str, context: Optional[RunContext] = None,
               budget: Optional[DeadLetterBudget] = None):
    super().__init__()
    if not path:
      raise ValueError('--dead_letter_path: a directory is required (dead letters are never '
                       'dropped silently)')
    self._path = path
    self._context = context
    self._budget = budget

  def expand(self, letters):
    if isinstance(letters, beam.PCollection):
      return letters | 'WriteDeadLetterFiles' >> beam.ParDo(
          _WriteDeadLettersFn(self._path, self._context, self._budget))
    return tuple(
        pcoll | f'WriteDeadLetterFiles{i}' >> beam.ParDo(
            _WriteDeadLettersFn(self._path, self._context, self._budget))
        for i, pcoll in enumerate(letters))
