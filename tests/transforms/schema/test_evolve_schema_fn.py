"""The schema step with a schema change topic: a row with fields its table lacks waits for the
topic to be read to its end, every time, before it may change the table itself."""

import pytest

from transforms.records.routing import SourceNaming
from transforms.schema.config import SchemaChangeTopic, SchemaEvolutionConfig
from transforms.schema.transform import _EvolveSchemaFn
from transforms.stream_load.config import StreamLoadConfig
from transforms.types import Row, RowBatch

pytestmark = pytest.mark.unit


class _Step:
  def __init__(self, target, barrier):
    self.target, self.barrier = target, barrier


class _Rename:
  done = False


class _Changes:
  """A topic whose records show only to a read that goes to the end offsets (not fetched yet)."""

  def __init__(self, evolution):
    self.evolution = evolution
    self.pending = []
    self.reads = []

  def read(self, catch_up):
    self.reads.append(catch_up)
    if not catch_up:
      return []
    records, self.pending = self.pending, []
    return records

  def steps(self, record):
    return [_Step('shop.customers', barrier=True)]

  def follow(self, record, steps):
    self.evolution.columns['shop.customers'] = ['id', 'full_name']
    self.evolution.ran.append('RENAME COLUMN name full_name')

  def fit(self, table, rows):
    return rows, []

  def close(self):
    pass


class _Evolution:
  """The cluster as the worker knows it; ``ensure`` adds any column a row has."""

  def __init__(self):
    self.columns = {'shop.customers': ['id', 'name']}
    self.looked_up = set()
    self.ran = []

  def fits(self, table, rows):
    return table in self.looked_up and all(
        set(row.fields) <= set(self.columns[table]) for row in rows)

  def ensure(self, table, rows, column_types=None, key_columns=None):
    self.looked_up.add(table)
    for row in rows:
      for name in row.fields:
        if name not in self.columns[table]:
          self.columns[table].append(name)
          self.ran.append(f'ADD COLUMN {name}')
    return rows, []

  def close(self):
    pass


def _rows(*fields):
  return RowBatch(Row('shop.customers', dict(f), 'upsert', 't', 0, i, 10)
                  for i, f in enumerate(fields))


def test_a_rename_read_late_runs_before_the_row_in_its_new_name_adds_a_column():
  config = SchemaEvolutionConfig(
      load=StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', password=''),
      mode='evolve', ddl=SchemaChangeTopic('dbz', {'group.id': 'g'}, naming=SourceNaming()))
  fn = _EvolveSchemaFn(config)
  fn.setup()
  fn.teardown()  # the real clients: not needed here
  evolution = fn._evolution = _Evolution()  # pylint: disable=protected-access
  changes = fn._changes = _Changes(evolution)  # pylint: disable=protected-access
  first = list(fn.process(('shop.customers', _rows({'id': 1, 'name': 'ann'}))))
  assert [len(rows) for _, rows in first] == [1] and evolution.ran == []
  # The source renames name -> full_name; the row in the new name arrives before the worker's
  # consumer fetched the rename (a moment after the first chunk's catch-up found nothing).
  changes.pending.append(_Rename())
  out = list(fn.process(('shop.customers', _rows({'id': 2, 'full_name': 'bob'}))))
  assert evolution.ran == ['RENAME COLUMN name full_name']  # no ADD COLUMN full_name
  barrier, (_, rows) = out[0][1], out[1]
  assert barrier.barrier and [row.fields for row in rows] == [{'id': 2, 'full_name': 'bob'}]
