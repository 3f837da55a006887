"""``--replay_dead_letters``: loads what went to dead letters, once its cause is fixed.

Run the job's own command line with ``--replay_dead_letters`` added (the job may go on running
meanwhile). Every dead-letter file under ``--dead_letter_path`` is read, and:

* rows of the load stage (``load``, ``rejected``: the cluster refused them -- a column too
  short, a table that did not exist) are loaded again, straight into their table with Stream
  Load, in Kafka order, under labels made from their Kafka offsets and bodies. A replay that
  runs again (twice, or after a crash) finds those labels loaded: no row is loaded twice.
* records of the parse stage (undecodable, unroutable, refused by a schema change) are produced
  again to their topic, for the job -- with its corrected flags -- to read like any other
  record. That is at least once: a replay killed between producing a file's records and marking
  the file may produce them again (an upsert into a unique-key table makes that harmless).
  Their Kafka keys were not kept: a format that needs the key (a Debezium delete without its
  ``before`` row) fails again, and is written back.

A file done is renamed ``<name>.replayed``. Rows and records that fail again go to a new file,
``dead-letters-replay-<name>.jsonl``, with their new reason (a replay after the next fix takes
them). A payload cut at 64 KiB when it was dead-lettered cannot be replayed: it is written back
with the reason ``truncated`` and its topic, partition and offset (read the record from Kafka).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from typing import Dict, List, Optional

import orjson
from apache_beam.io.filesystems import FileSystems

from pipelines.config import ConfigurationError, PipelineConfig
from transforms.dead_letters import dead_letter_to_json
from transforms.errors import ClusterFault
from transforms.kafka.config import new_producer, producer_config_of
from transforms.stream_load import StreamLoadClient
from transforms.stream_load.loader import BatchLoader
from transforms.stream_load.outcome import LABEL_EXISTS_STATUSES
from transforms.types import (DORIS_DELETE_SIGN, MAX_DEAD_LETTER_PAYLOAD_BYTES, OP_DELETE,
                              OP_UPSERT, STARROCKS_OP, DeadLetter, Row)

__all__ = ['replay_dead_letters', 'ReplaySummary', 'REPLAY_FLAG', 'LOAD_STAGES']

_LOGGER = logging.getLogger('pipelines.replay')

REPLAY_FLAG = '--replay_dead_letters'
# The stages whose payload is a row as the cluster was sent it.
LOAD_STAGES = ('load', 'rejected')
_DONE_SUFFIX = '.replayed'
_PRODUCE_TIMEOUT_SECS = 60.0


@dataclasses.dataclass
class ReplaySummary:
  """What a replay did."""
  files: int = 0
  rows_loaded: int = 0
  rows_already_loaded: int = 0
  records_produced: int = 0
  failed_again: int = 0
  truncated: int = 0
  incomplete_files: List[str] = dataclasses.field(default_factory=list)

  def lines(self) -> List[str]:
    out = [f'replayed {self.files} dead-letter file(s): {self.rows_loaded} row(s) loaded'
           + (f' ({self.rows_already_loaded} found loaded by an earlier replay)'
              if self.rows_already_loaded else '')
           + f', {self.records_produced} record(s) produced again to their topics for the job']
    if self.failed_again or self.truncated:
      out.append(f'{self.failed_again + self.truncated} failed again ({self.truncated} cut at '
                 f'{MAX_DEAD_LETTER_PAYLOAD_BYTES // 1024} KiB): written back to '
                 'dead-letters-replay-*.jsonl with their reason')
    for name in self.incomplete_files:
      out.append(f'skipped {name}: its last line is incomplete (still being written?)')
    return out

  @property
  def complete(self) -> bool:
    return not (self.failed_again or self.truncated or self.incomplete_files)


def replay_dead_letters(config: PipelineConfig) -> ReplaySummary:
  """Replays every dead-letter file under ``config.dead_letter_path`` (see the module doc).

  Raises:
    ConfigurationError: the path holds no dead-letter directory.
    ClusterFault: the cluster or Kafka is unavailable (nothing is marked done; run again).
  """
  path = config.dead_letter_path.rstrip('/')
  if not FileSystems.exists(path):
    raise ConfigurationError(f'--dead_letter_path: {path} does not exist')
  names = sorted(metadata.path for metadata in
                 FileSystems.match([FileSystems.join(path, 'dead-letters-*.jsonl')])[0]
                 .metadata_list)
  summary = ReplaySummary()
  with _Replayer(config, summary) as replayer:
    for name in names:
      letters = _read(name)
      if letters is None:
        summary.incomplete_files.append(name)
        continue
      failed = replayer.replay(letters)
      base = name.rsplit('/', 1)[-1]
      if failed:
        again = FileSystems.join(path, 'dead-letters-replay-'
                                 + base[len('dead-letters-'):])
        with FileSystems.create(again) as handle:
          handle.write(b''.join(dead_letter_to_json(letter) for letter in failed))
      FileSystems.rename([name], [name + _DONE_SUFFIX])
      summary.files += 1
      _LOGGER.info('replayed %s (%d letters, %d failed again)', name, len(letters), len(failed))
  return summary


def _read(name: str) -> Optional[List[DeadLetter]]:
  """The letters of one file; None when its last line is cut (a writer is still at it)."""
  with FileSystems.open(name) as handle:
    data = handle.read()
  letters = []
  for line in data.splitlines():
    if not line.strip():
      continue
    try:
      record = orjson.loads(line)
    except orjson.JSONDecodeError:
      return None
    if 'payload_base64' in record:
      payload = base64.b64decode(record['payload_base64'])
    elif record.get('payload') is not None:
      payload = record['payload'].encode('utf-8')
    else:
      payload = None
    letters.append(DeadLetter(record.get('stage') or '', record.get('reason') or '',
                              record.get('topic'), record.get('partition'), record.get('offset'),
                              record.get('table'), payload))
  return letters


class _Replayer:
  """The client and producer of one replay; ``replay`` returns the letters that failed again."""

  def __init__(self, config: PipelineConfig, summary: ReplaySummary):
    self._config = config
    self._summary = summary
    self._client: Optional[StreamLoadClient] = None
    self._loader: Optional[BatchLoader] = None
    self._producer = None

  def __enter__(self) -> '_Replayer':
    return self

  def __exit__(self, *exc) -> None:
    if self._client is not None:
      self._client.close()
    if self._producer is not None:
      self._producer.flush(_PRODUCE_TIMEOUT_SECS)

  def replay(self, letters: List[DeadLetter]) -> List[DeadLetter]:
    failed: List[DeadLetter] = []
    truncated: List[DeadLetter] = []
    rows: Dict[str, List[Row]] = {}
    records: List[DeadLetter] = []
    for letter in letters:
      if letter.payload is None or len(letter.payload) >= MAX_DEAD_LETTER_PAYLOAD_BYTES:
        truncated.append(letter._replace(reason=(
            f'truncated: the payload was cut at {MAX_DEAD_LETTER_PAYLOAD_BYTES // 1024} KiB '
            f'when dead-lettered; read the record at {letter.topic}/{letter.partition}@'
            f'{letter.offset} from Kafka ({letter.reason})')))
      elif letter.stage in LOAD_STAGES and letter.table:
        row = _row_of(letter)
        if row is None:
          failed.append(letter._replace(reason=f'not_object: the payload is not a JSON object '
                                        f'({letter.reason})'))
        else:
          rows.setdefault(letter.table, []).append(row)
      elif letter.topic:
        records.append(letter)
      else:
        failed.append(letter._replace(reason=f'no_topic: the letter names no topic to produce '
                                      f'it to ({letter.reason})'))
    for table, table_rows in sorted(rows.items()):
      failed.extend(self._load(table, table_rows))
    if records:
      self._produce(records)
    self._summary.failed_again += len(failed)
    self._summary.truncated += len(truncated)
    return truncated + failed

  # -- the load stage -------------------------------------------------------------

  def _load(self, table: str, rows: List[Row]) -> List[DeadLetter]:
    loader = self._batch_loader()
    rows.sort(key=lambda row: (row.topic or '', row.partition or 0, row.offset or 0))
    step = self._config.table_config.batch_limits().get(table, self._config.default_limits).rows
    failed: List[DeadLetter] = []
    for start in range(0, len(rows), step):
      report = loader.load(None, table, rows[start:start + step])
      for row, reason in report.encode_failures:
        failed.append(_letter(row, table, reason))
      for piece_rows, outcome, error in report.pieces:
        if error is not None:
          failed.extend(_letter(row, table, f'{error.reason}: {error}') for row in piece_rows)
        elif outcome.status in LABEL_EXISTS_STATUSES:
          self._summary.rows_already_loaded += len(piece_rows)
        else:
          self._summary.rows_loaded += len(piece_rows)
    return failed

  def _batch_loader(self) -> BatchLoader:
    if self._loader is None:
      self._client = StreamLoadClient(self._config.load)
      # Labels of their own (the rows' offsets and bodies under the job's prefix + _replay):
      # never a label the job used, the same on every replay of the same rows.
      options = {table: dataclasses.replace(opts, label_prefix=None)
                 for table, opts in self._config.table_config.load_options().items()}
      self._loader = BatchLoader(self._client, None, f'{self._config.label_prefix}_replay',
                                 options)
    return self._loader

  # -- the parse stage ------------------------------------------------------------

  def _produce(self, records: List[DeadLetter]) -> None:
    if self._producer is None:
      self._producer = new_producer(producer_config_of(dict(self._config.kafka.consumer_config)),
                                    **{'enable.idempotence': True})
    errors: List[str] = []

    def delivered(error, _message) -> None:
      if error is not None:
        errors.append(str(error))

    records.sort(key=lambda letter: (letter.topic, letter.partition or 0, letter.offset or 0))
    for letter in records:
      while True:
        try:
          self._producer.produce(letter.topic, letter.payload, on_delivery=delivered)
          break
        except BufferError:  # the producer's queue is full: let it send
          self._producer.poll(0.1)
      self._producer.poll(0)
    left = self._producer.flush(_PRODUCE_TIMEOUT_SECS)
    if errors or left:
      raise _KafkaUnavailable(f'producing the dead-lettered records again failed: '
                              f'{errors[0] if errors else f"{left} not delivered"}; nothing was '
                              'marked replayed, run the replay again')
    self._summary.records_produced += len(records)


class _KafkaUnavailable(ClusterFault):
  """Kafka did not take the records back."""


def _row_of(letter: DeadLetter) -> Optional[Row]:
  try:
    fields = orjson.loads(letter.payload)
  except orjson.JSONDecodeError:
    return None
  if type(fields) is not dict:
    return None
  deleted = bool(fields.get(DORIS_DELETE_SIGN) or fields.get(STARROCKS_OP))
  return Row(letter.table, fields, OP_DELETE if deleted else OP_UPSERT, letter.topic or '',
             letter.partition or 0, letter.offset or 0, len(letter.payload), raw=letter.payload)


def _letter(row: Row, table: str, reason: str) -> DeadLetter:
  return DeadLetter('load', reason, row.topic, row.partition, row.offset, table, row.raw)

