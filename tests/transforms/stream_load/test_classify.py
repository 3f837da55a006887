"""classify_failure: the servers' messages -> the error to act on, by whose fault it is."""

import pytest

from transforms.stream_load.classify import classify_failure
from transforms.stream_load.errors import (AuthenticationError, ClusterFaultError,
                                           DataQualityError, RetryableLoadError, RowFaultError,
                                           TableNotFoundError, UnclassifiedLoadError)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('message, expected', [
    ('[E-235]too many versions, tablet_id=10086, version_count=2001, limit=2000', RetryableLoadError),
    ('current running txns on db 10002 is 100, larger than limit 100', RetryableLoadError),
    ('[TIMEOUT]timeout', RetryableLoadError),
    ('[INTERNAL_ERROR]cancelled: rpc failed', RetryableLoadError),
    ('unknown reason nobody has seen', UnclassifiedLoadError),
    ('', UnclassifiedLoadError),
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


def test_each_error_names_whose_fault_it_is():
  """The sink decides with one isinstance: the rows' fault -> dead letters, else fail the bundle."""
  assert issubclass(DataQualityError, RowFaultError)
  assert issubclass(TableNotFoundError, RowFaultError)
  assert issubclass(AuthenticationError, ClusterFaultError)
  for cls in (RetryableLoadError, UnclassifiedLoadError, AuthenticationError):
    assert not issubclass(cls, RowFaultError), cls
  assert issubclass(UnclassifiedLoadError, RetryableLoadError)


@pytest.mark.parametrize('message, expected', [
    ('[DATA_QUALITY_ERROR]too many filtered rows; column password is too long', DataQualityError),
    ('tablet 10086 does not exist', RetryableLoadError),
    ('partition p1 does not exist', RetryableLoadError),
    ('errCode = 2, detailMessage = Table [nosuch] does not exist in database [demo]',
     TableNotFoundError),
    ('Need auth information.', AuthenticationError),
])
def test_classify_failure_does_not_overreach(message, expected):
  """A missing tablet or partition is cluster trouble (retried), not a missing table."""
  assert isinstance(classify_failure(message, table='db.t', label='l', status='Fail'), expected)
