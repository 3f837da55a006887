"""Labels and request bodies: pure functions."""

import decimal
import gzip

import orjson
import pytest

from transforms.stream_load.bodies import encode_dicts, encode_rows, gzip_body
from transforms.stream_load.labels import LABEL_PATTERN, is_valid_label, make_label
from transforms.types import Row

pytestmark = pytest.mark.unit


def test_label_is_deterministic_for_the_same_offsets():
  offsets = {('orders', 0): (5, 6, 7), ('orders', 1): (9,)}
  assert make_label('p', 'demo.orders', offsets) == make_label('p', 'demo.orders', dict(offsets))


def test_label_differs_for_different_offsets_tables_and_prefixes():
  base = make_label('p', 'demo.orders', {('t', 0): (1, 2)})
  assert make_label('p', 'demo.orders', {('t', 0): (1, 3)}) != base
  assert make_label('p', 'demo.orders', {('t', 1): (1, 2)}) != base
  assert make_label('p', 'demo.users', {('t', 0): (1, 2)}) != base
  assert make_label('q', 'demo.orders', {('t', 0): (1, 2)}) != base


def test_label_fits_doris_rules_even_for_long_names():
  label = make_label('x' * 100, 'db_' + 'y' * 100 + '.t.z', {('topic.with.dots', 0): (1,)})
  assert len(label) <= 128
  assert LABEL_PATTERN.match(label)
  assert is_valid_label(label)


def test_label_without_offsets_uses_the_body():
  assert make_label('p', 'db.t', body=b'a') != make_label('p', 'db.t', body=b'b')
  with pytest.raises(ValueError):
    make_label('p', 'db.t')


def test_invalid_labels_are_rejected():
  assert not is_valid_label('has space')
  assert not is_valid_label('')
  assert not is_valid_label('x' * 129)


def test_encode_rows_reuses_raw_values_and_encodes_the_rest():
  rows = [Row('db.t', {'a': 1}, 'upsert', 't', 0, 0, 7, b'{"a":1}'),
          Row('db.t', {'b': 'x'}, 'upsert', 't', 0, 1, 9, None)]
  encoded = encode_rows(rows)
  assert encoded.body == b'{"a":1}\n{"b":"x"}'
  assert encoded.rows == 2 and encoded.failed == []


def test_encode_as_array_for_starrocks():
  encoded = encode_dicts([{'a': 1}, {'a': 2}], as_array=True)
  assert orjson.loads(encoded.body) == [{'a': 1}, {'a': 2}]


def test_unserialisable_rows_are_reported_not_dropped():
  encoded = encode_dicts([{'a': 1}, {'a': object()}, {'a': decimal.Decimal('1.50')}])
  assert encoded.rows == 2
  assert [index for index, _ in encoded.failed] == [1]
  assert 'not JSON serialisable' in encoded.failed[0][1]
  assert encoded.body.splitlines()[1] == b'{"a":"1.50"}'


def test_gzip_body_round_trips():
  body = b'{"a":1}\n' * 1000
  assert gzip.decompress(gzip_body(body)) == body
  assert len(gzip_body(body)) < len(body) / 10


def test_rows_of_one_record_in_different_batches_get_different_labels():
  # One Kafka record (offset 5) became two rows that landed in two batches.
  offsets = {('t', 0): (5,)}
  assert make_label('p', 'db.t', offsets, body=b'{"id":1}') != make_label(
      'p', 'db.t', offsets, body=b'{"id":2}')
  assert make_label('p', 'db.t', offsets, body=b'{"id":1}') == make_label(
      'p', 'db.t', dict(offsets), body=b'{"id":1}')


def test_the_label_formula_is_pinned():
  """Golden value: a batch's label must not change across releases.  A restart after an upgrade
  re-sends uncommitted batches; with a new formula their labels would differ and Doris would load
  the rows again.  If this fails, the formula changed: say so in the README (upgrade notes)."""
  rows = [Row('shop.orders', {'id': i}, 'upsert', 'orders', 3, 100 + i, 9, b'{"id":%d}' % i)
          for i in range(3)]
  encoded = encode_rows(rows)
  label = make_label('orders-job', 'shop.orders', {('orders', 3): (100, 101, 102)},
                     body=encoded.body)
  assert label == 'orders-job-shop-orders-' + GOLDEN_DIGEST


# Computed with the formula as released (commit 4351be5).
GOLDEN_DIGEST = '1628215a0d6d32624ff46e08b3ef7f95'


def _csv_lines(encoded):
  return [line.split(b'\x01') for line in encoded.body.split(b'\x02')]


def test_csv_bodies_name_their_columns_and_write_null_as_backslash_n():
  rows = [Row('db.t', {'id': 1, 'name': 'a', 'score': 1.5, 'ok': True, 'tags': ['x']}, 'upsert',
              't', 0, 1, 10),
          Row('db.t', None, 'upsert', 't', 0, 2, 10, b'{"id":2,"name":null}', ('id', 'name'))]
  encoded = encode_rows(rows, load_format='csv')
  assert encoded.headers == {'format': 'csv', 'columns': '`id`,`name`,`score`,`ok`,`tags`',
                             'column_separator': '\\x01', 'line_delimiter': '\\x02'}
  assert _csv_lines(encoded) == [[b'1', b'a', b'1.5', b'true', b'["x"]'],
                                 [b'2', b'\\N', b'\\N', b'\\N', b'\\N']]
  assert encoded.rows == 2 and not encoded.failed
  starrocks = encode_rows(rows, load_format='csv', starrocks=True)
  assert starrocks.headers['row_delimiter'] == '\\x02' and 'line_delimiter' not in starrocks.headers


def test_csv_values_holding_separators_quotes_or_a_literal_backslash_n_are_enclosed():
  rows = [Row('db.t', {'id': 1, 'v': 'a\x01b'}, 'upsert', 't', 0, 1, 10),
          Row('db.t', {'id': 2, 'v': 'say "hi" \\ \\N'}, 'upsert', 't', 0, 2, 10),
          Row('db.t', {'id': 3, 'v': None}, 'upsert', 't', 0, 3, 10)]
  encoded = encode_rows(rows, load_format='csv')
  assert encoded.headers['enclose'] == '"' and encoded.headers['escape'] == '\\'
  assert encoded.body.split(b'\x02') == [
      b'"1"\x01"a\x01b"', b'"2"\x01"say \\"hi\\" \\\\ \\\\N"', b'"3"\x01\\N']
  plain = encode_rows(rows[2:], load_format='csv')
  assert 'enclose' not in plain.headers


def test_arrow_bodies_are_an_ipc_stream_of_the_rows():
  import pyarrow as pa
  rows = [Row('db.t', {'id': i, 'name': f'n{i}', 'amount': decimal.Decimal('1.25')}, 'upsert',
              't', 0, i, 10) for i in range(3)]
  encoded = encode_rows(rows, load_format='arrow')
  assert encoded.headers == {'format': 'arrow'} and encoded.rows == 3
  table = pa.ipc.open_stream(encoded.body).read_all()
  assert table.to_pylist() == [{'id': i, 'name': f'n{i}', 'amount': decimal.Decimal('1.25')}
                               for i in range(3)]


def test_an_arrow_batch_pyarrow_cannot_type_goes_as_json():
  rows = [Row('db.t', {'v': 1}, 'upsert', 't', 0, 0, 5), Row('db.t', {'v': 'x'}, 'upsert', 't', 0, 1, 5)]
  encoded = encode_rows(rows, load_format='arrow')
  assert encoded.headers['format'] == 'json' and encoded.body == b'{"v":1}\n{"v":"x"}'
