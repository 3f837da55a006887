"""CSV bodies, Doris and StarRocks flavours.

Doris: ``fe/.../analysis/Separator.java`` (hex separators), ``be/.../csv/csv_reader.cpp``
(splitting, ``\\N``, trim_double_quotes, the wrong-column-count text) and the enclose state
machine of ``new_plain_text_line_reader.cpp``; the enclose/escape examples are the ones of
https://doris.apache.org/docs/data-operate/import/file-format/csv.
"""

import gzip

import requests

from tests.stream_load_emulator.helpers import stream_load
import pytest

pytestmark = pytest.mark.transform

SR_SCHEMA = '''
CREATE DATABASE IF NOT EXISTS sr;
CREATE TABLE sr.users (
  id INT NOT NULL,
  name VARCHAR(65533) NULL,
  score INT NULL
) ENGINE=OLAP
PRIMARY KEY(id)
DISTRIBUTED BY HASH(id) BUCKETS 1;
'''


def _users(srv, columns='id, name, email, age'):
  return srv.query('SELECT %s FROM demo.users ORDER BY id' % columns)


def test_csv_is_the_default_format_with_tab_separator(stream_load_server):
  srv = stream_load_server
  body = b'1\talice\ta@x\t30\t2024-01-02 03:04:05\n2\tbob\t\\N\t\\N\t\\N\n'
  res = stream_load(srv, 'demo', 'users', body)  # no format header at all
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2, res
  assert srv.query('SELECT id, name, email, age, updated_at FROM demo.users ORDER BY id') == [
      (1, 'alice', 'a@x', 30, '2024-01-02 03:04:05'), (2, 'bob', None, None, None)]


def test_hex_column_separator_and_line_delimiter(stream_load_server):
  srv = stream_load_server
  body = b'1\x01al\x01\\N\x022\x01bo\x01b@x\x02'
  res = stream_load(srv, 'demo', 'users', body, {
      'column_separator': '\\x01', 'line_delimiter': '\\x02', 'columns': 'id, name, email'})
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2, res
  assert _users(srv, 'id, name, email') == [(1, 'al', None), (2, 'bo', 'b@x')]


def test_multi_byte_hex_delimiter_and_multi_char_separator(stream_load_server):
  srv = stream_load_server
  body = b'1||x\r\n2||y\r\n3||z'  # no delimiter after the last line
  res = stream_load(srv, 'demo', 'users', body, {
      'column_separator': '||', 'line_delimiter': '\\x0D0A', 'columns': 'id,name'})
  assert res['NumberLoadedRows'] == 3, res
  assert _users(srv, 'id, name') == [(1, 'x'), (2, 'y'), (3, 'z')]


def test_bad_hex_separator_fails_like_the_fe(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'1\n', {'column_separator': '\\xZZ'})
  assert res['Status'] == 'Fail'
  assert res['Message'] == ('[ANALYSIS_ERROR]TStatus: errCode = 2, detailMessage = Hex str '
                            'format error')
  res = stream_load(stream_load_server, 'demo', 'users', b'1\n', {'line_delimiter': '\\x0'})
  assert res['Message'].endswith('Hex str length error')


def test_columns_mapping_with_expression(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'7,10,al\n8,\\N,bo\n', {
      'column_separator': ',', 'columns': 'id, tmp_age, name, age = tmp_age * 2'})
  assert res['NumberLoadedRows'] == 2, res
  assert _users(srv, 'id, name, age') == [(7, 'al', 20), (8, 'bo', None)]


def test_enclose_and_escape_follow_the_doris_examples(stream_load_server):
  srv = stream_load_server
  body = (b"1,'b,c'\n"             # [b,c]
          b"2,'b\nc'\n"            # the line delimiter inside the enclose is data
          b"3,'b,\\'c'\n"          # [b,'c]
          b"4,'b\\\\c'\n"          # [b\c]
          b"5,'say ''hi'''\n")     # doubled enclose -> one
  res = stream_load(srv, 'demo', 'users', body, {
      'column_separator': ',', 'enclose': "'", 'escape': '\\', 'columns': 'id, name'})
  assert res['Status'] == 'Success' and res['NumberTotalRows'] == 5, res
  assert _users(srv, 'id, name') == [(1, 'b,c'), (2, 'b\nc'), (3, "b,'c"), (4, 'b\\c'),
                                     (5, "say 'hi'")]


def test_enclose_without_escape_keeps_backslashes(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'1,"a\\b, c"\n', {
      'column_separator': ',', 'enclose': '"', 'columns': 'id, name'})
  assert res['NumberLoadedRows'] == 1, res
  assert _users(srv, 'id, name') == [(1, 'a\\b, c')]


def test_enclose_and_escape_must_be_single_chars(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'1\n', {'enclose': "''"})
  assert res['Message'] == "[INVALID_ARGUMENT]enclose must be single-char, actually is ''"
  res = stream_load(stream_load_server, 'demo', 'users', b'1\n', {'escape': 'ab'})
  assert res['Message'] == '[INVALID_ARGUMENT]escape must be single-char, actually is ab'


def test_trim_double_quotes_and_quoted_null(stream_load_server):
  srv = stream_load_server
  body = b'1,"bob","\\N"\n2,"x",\\N\n'
  res = stream_load(srv, 'demo', 'users', body, {
      'column_separator': ',', 'trim_double_quotes': 'true', 'columns': 'id, name, email'})
  assert res['NumberLoadedRows'] == 2, res
  # A quoted \N is the text \N once trimmed (csv_reader.cpp _deserialize_nullable_string).
  assert _users(srv, 'id, name, email') == [(1, 'bob', '\\N'), (2, 'x', None)]
  stream_load(srv, 'demo', 'users', b'3,"q"\n', {'column_separator': ',', 'columns': 'id,name'})
  assert _users(srv, 'name')[-1] == ('"q"',)  # without the header the quotes are data


def test_wrong_column_count_error_log_text(stream_load_server):
  srv = stream_load_server
  res = stream_load(srv, 'demo', 'users', b'1,a\n2,b,\\N,d\n3\n', {
      'column_separator': ',', 'columns': 'id,name', 'max_filter_ratio': '0.9'})
  assert (res['NumberTotalRows'], res['NumberLoadedRows'], res['NumberFilteredRows']) == (
      3, 1, 2)
  log = requests.get(res['ErrorURL']).text
  assert ('Reason: actual column number in csv file is  more than  schema column number.actual '
          'number: 4, schema column number: 2; line delimiter: [\n], column separator: [,], '
          'result values:[2, b, \\N, d, ]. src line [2,b,\\N,d]; ') in log
  assert ('Reason: actual column number in csv file is  less than  schema column number.actual '
          'number: 1, schema column number: 2;') in log
  # Default: no tolerance, nothing loaded.
  fail = stream_load(srv, 'demo', 'users', b'9,a,b\n', {'column_separator': ',',
                                                        'columns': 'id,name'})
  assert fail['Status'] == 'Fail'
  assert fail['Message'] == '[DATA_QUALITY_ERROR]too many filtered rows'
  assert _users(srv, 'id') == [(1,)]


def test_wrong_column_count_text_names_enclose_and_escape(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'"1","a","b"\n', {
      'column_separator': ',', 'enclose': '"', 'escape': '\\', 'columns': 'id,name'})
  log = requests.get(res['ErrorURL']).text
  assert ('column separator: [,], enclose:["] escape:[\\] result values:[1, a, b, ]'
          in log), log


def test_gzip_csv(stream_load_server):
  srv = stream_load_server
  body = gzip.compress(b''.join(b'%d,n%d\n' % (i, i) for i in range(50)))
  res = stream_load(srv, 'demo', 'users', body, {
      'column_separator': ',', 'columns': 'id,name', 'compress_type': 'gz'})
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 50, res
  assert res['LoadBytes'] == len(body)


def test_bom_crlf_and_empty_lines(stream_load_server):
  srv = stream_load_server
  body = b'\xef\xbb\xbf1,a\r\n\r\n\n2,b\r\n'
  res = stream_load(srv, 'demo', 'users', body, {'column_separator': ',',
                                                 'columns': 'id,name'})
  assert (res['NumberTotalRows'], res['NumberLoadedRows']) == (2, 2), res
  assert _users(srv, 'id, name') == [(1, 'a'), (2, 'b')]


def test_invalid_utf8_row_is_filtered(stream_load_server):
  res = stream_load(stream_load_server, 'demo', 'users', b'1,ok\n2,\xff\xfe\n', {
      'column_separator': ',', 'columns': 'id,name', 'max_filter_ratio': '0.5'})
  assert (res['NumberLoadedRows'], res['NumberFilteredRows']) == (1, 1)
  assert 'only support csv data in utf8 codec' in requests.get(res['ErrorURL']).text


# --- StarRocks flavour ------------------------------------------------------------------------


def test_starrocks_row_delimiter_skip_header_and_trim_space(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=SR_SCHEMA, flavor='starrocks')
  body = b'id | name | score\r\n1 |  al  | 5\r\n2|\\N|\\N\r\n'
  res = stream_load(srv, 'sr', 'users', body, {
      'column_separator': '|', 'row_delimiter': '\\x0D0A', 'skip_header': '1',
      'trim_space': 'true'})
  assert res['Status'] == 'Success' and res['NumberLoadedRows'] == 2, res
  assert srv.query('SELECT id, name, score FROM sr.users ORDER BY id') == [
      (1, 'al', 5), (2, None, None)]


def test_starrocks_enclose_and_escape(make_stream_load_server):
  # STREAM_LOAD.md: with escape \ "a, b\, c" is two fields; "" inside an enclose is one ".
  srv = make_stream_load_server(schema_sql=SR_SCHEMA, flavor='starrocks')
  body = b'1,b\\, c\n2,"a ""quoted"" c"\n3,"x\ny"\n'
  res = stream_load(srv, 'sr', 'users', body, {
      'column_separator': ',', 'enclose': '"', 'escape': '\\', 'columns': 'id, name'})
  assert res['NumberLoadedRows'] == 3, res
  assert srv.query('SELECT id, name FROM sr.users ORDER BY id') == [
      (1, 'b, c'), (2, 'a "quoted" c'), (3, 'x\ny')]


def test_starrocks_wrong_column_count(make_stream_load_server):
  srv = make_stream_load_server(schema_sql=SR_SCHEMA, flavor='starrocks')
  res = stream_load(srv, 'sr', 'users', b'1,a,3\n2,b\n', {
      'column_separator': ',', 'max_filter_ratio': '0.5'})
  assert (res['NumberLoadedRows'], res['NumberFilteredRows']) == (1, 1), res
  log = requests.get(res['ErrorURL']).text
  assert log == ('Error: Value count does not match column count. Expect 3, but got 2. Column '
                 'delimiter: 44,Row delimiter: 10.. Row: 2,b\n')


def test_count_only_counts_rows_by_the_hex_line_delimiter(make_stream_load_server):
  srv = make_stream_load_server(count_only=True)
  res = stream_load(srv, 'demo', 'users', b'1,a\x022,b\x023,c', {
      'column_separator': ',', 'line_delimiter': '\\x02', 'columns': 'id,name'})
  assert res['NumberLoadedRows'] == 3, res
  sr = make_stream_load_server(count_only=True, schema_sql=SR_SCHEMA, flavor='starrocks')
  res = stream_load(sr, 'sr', 'users', b'h\r\n1,a\r\n2,b\r\n', {
      'column_separator': ',', 'row_delimiter': '\\x0D0A', 'skip_header': '1'})
  assert res['NumberLoadedRows'] == 2, res
