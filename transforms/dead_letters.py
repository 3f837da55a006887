"""``WriteDeadLetters``: durable dead letters, then their offsets acknowledged.

Dead letters are written as JSON lines (one file per bundle, through Beam's
``FileSystems``, so a local directory and ``gs://`` both work) before their
Kafka offsets are acknowledged to ``CommitOffsets``: a record's offset is
committed only once it is loaded *or* its dead letter is on disk.  Rejected
rows (filtered by the server within ``max_filter_ratio``) are written for the
record but not acknowledged again: their batch was loaded and acknowledged.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms import metrics
from transforms.runtime import RunContext, acquire, release
from transforms.types import DeadLetter, OffsetAck

__all__ = ['WriteDeadLetters', 'dead_letter_to_json', 'reason_code', 'ACKED_STAGES']

_LOGGER = logging.getLogger(__name__)
ACKED_STAGES = ('parse', 'load')


def reason_code(letter: DeadLetter) -> str:
  """The short code of a dead letter's reason (``invalid_json``, ``DataQualityError``, ...)."""
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

  def __init__(self, path: str, context: Optional[RunContext]):
    self._path = path.rstrip('/')
    self._context = context
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
  """

  def __init__(self, path: str, context: Optional[RunContext] = None):
    super().__init__()
    if not path:
      raise ValueError('--dead_letter_path: a directory is required (dead letters are never '
                       'dropped silently)')
    self._path = path
    self._context = context

  def expand(self, letters):
    if isinstance(letters, beam.PCollection):
      return letters | 'WriteDeadLetterFiles' >> beam.ParDo(
          _WriteDeadLettersFn(self._path, self._context))
    return tuple(
        pcoll | f'WriteDeadLetterFiles{i}' >> beam.ParDo(
            _WriteDeadLettersFn(self._path, self._context))
        for i, pcoll in enumerate(letters))
