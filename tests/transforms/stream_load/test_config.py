"""StreamLoadConfig and TableLoadOptions: validated once, with the flag names in the errors."""

import pytest

from transforms.stream_load import StreamLoadConfig, TableLoadOptions
from transforms.stream_load.config import PASSWORD_ENV_VAR, split_table

pytestmark = pytest.mark.unit


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


def test_password_resolves_from_value_then_file_then_environment(tmp_path, monkeypatch):
  monkeypatch.setenv(PASSWORD_ENV_VAR, 'from-env')
  secret = tmp_path / 'secret'
  secret.write_text('from-file\n')
  base = dict(fe_nodes=('http://fe:8030',), user='root')
  assert StreamLoadConfig(**base, password='given', password_file=str(secret)).resolved(
  ).password == 'given'
  from_file = StreamLoadConfig(**base, password_file=str(secret))
  assert from_file.password is None  # nothing secret is pickled with the pipeline
  assert from_file.resolved().password == 'from-file'
  assert StreamLoadConfig(**base).resolved().password == 'from-env'
  monkeypatch.delenv(PASSWORD_ENV_VAR)
  assert StreamLoadConfig(**base).resolved().password == ''
  with pytest.raises(ValueError, match='--password_file'):
    StreamLoadConfig(**base, password_file=str(tmp_path / 'missing')).resolved()
