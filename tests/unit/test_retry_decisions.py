"""Which failures are retried and which are permanent: pure decisions."""

import pytest

from transforms.stream_load_client import (StreamLoadConfig, TableLoadOptions, classify_failure,
                                           split_table)
from transforms.stream_load_errors import (AuthenticationError, DataQualityError,
                                           RetryableLoadError, TableNotFoundError)


@pytest.mark.parametrize('message, expected', [
    ('[E-235]too many versions, tablet_id=10086, version_count=2001, limit=2000', RetryableLoadError),
    ('current running txns on db 10002 is 100, larger than limit 100', RetryableLoadError),
    ('[TIMEOUT]timeout', RetryableLoadError),
    ('unknown reason nobody has seen', RetryableLoadError),
    ('no valid Basic authorization', AuthenticationError),
    ('Access denied for user root@127.0.0.1', AuthenticationError),
    ('errCode = 2, detailMessage = Unknown table \'nosuch\'', TableNotFoundError),
    ('table [demo.nosuch] does not exist', TableNotFoundError),
    ('[DATA_QUALITY_ERROR]too many filtered rows', DataQualityError),
])
def test_classify_failure(message, expected):
  error = classify_failure(message, table='db.t', label='l', status='Fail')
  assert type(error) is expected
  assert error.table == 'db.t' and error.label == 'l'


def test_config_validates_with_flag_names():
  with pytest.raises(ValueError, match='--fe_nodes'):
    StreamLoadConfig(fe_nodes=(), user='root')
  with pytest.raises(ValueError, match='--fe_nodes'):
    StreamLoadConfig(fe_nodes=('ftp://x:1',), user='root')
  with pytest.raises(ValueError, match='--fe_nodes'):
    StreamLoadConfig(fe_nodes=('http://root:pw@fe:8030',), user='root')
  with pytest.raises(ValueError, match='--target'):
    StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', target='mysql')
  with pytest.raises(ValueError, match='--compression'):
    StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', compression='lz4')
  with pytest.raises(ValueError, match='--max_retries'):
    StreamLoadConfig(fe_nodes=('http://fe:8030',), user='root', max_retries=-1)


def test_config_repr_hides_the_password():
  config = StreamLoadConfig(fe_nodes='http://fe:8030,http://fe2:8030', user='root',
                            password='hunter2')
  assert 'hunter2' not in repr(config)
  assert config.fe_nodes == ('http://fe:8030', 'http://fe2:8030')


def test_table_options_to_headers():
  options = TableLoadOptions(columns='a,b', merge_type='merge', delete_condition='a=1',
                             sequence_column='seq', partial_columns=True, max_filter_ratio=0.1,
                             strict_mode=True, headers={'timezone': 'UTC'})
  assert options.to_headers() == {
      'timezone': 'UTC', 'columns': 'a,b', 'merge_type': 'MERGE', 'delete': 'a=1',
      'function_column.sequence_col': 'seq', 'partial_columns': 'true',
      'max_filter_ratio': '0.1', 'strict_mode': 'true'}


def test_table_options_reject_bad_values():
  with pytest.raises(ValueError, match='merge_type'):
    TableLoadOptions(merge_type='UPSERT')
  with pytest.raises(ValueError, match='max_filter_ratio'):
    TableLoadOptions(max_filter_ratio=2)
  with pytest.raises(ValueError, match='Authorization'):
    TableLoadOptions(headers={'Authorization': 'x'})


def test_split_table():
  assert split_table('db.t') == ('db', 't')
  for bad in ('t', 'db.', '.t', 'a.b.c'):
    with pytest.raises(ValueError):
      split_table(bad)


@pytest.mark.parametrize('message, expected', [
    ('[DATA_QUALITY_ERROR]too many filtered rows; column password is too long', DataQualityError),
    ('tablet 10086 does not exist', RetryableLoadError),
    ('partition p1 does not exist', RetryableLoadError),
    ('errCode = 2, detailMessage = Table [nosuch] does not exist in database [demo]',
     TableNotFoundError),
    ('Need auth information.', AuthenticationError),
])
def test_classify_failure_does_not_overreach(message, expected):
  assert type(classify_failure(message, table='db.t', label='l', status='Fail')) is expected


def test_an_https_fe_redirecting_to_a_plain_http_be_is_warned_about(caplog):
  import requests
  from transforms.stream_load_client import StreamLoadClient

  class _Session:
    def request(self, method, url, **kwargs):
      response = requests.Response()
      response.status_code = 307
      response.headers['Location'] = 'http://root:pw@be1:8040/api/db/t/_stream_load'
      return response

    def close(self):
      pass

  client = StreamLoadClient(StreamLoadConfig(fe_nodes=('https://fe1:8030',), user='root',
                                             password='pw'), session=_Session())
  be, fe = client._resolve_be('/api/db/t/_stream_load', {}, 'db.t', 'l')
  assert (be, fe) == ('http://be1:8040', 'https://fe1:8030')
  assert 'plain http' in caplog.text and 'pw' not in caplog.text
