"""Transport: the FE -> BE redirect and where credentials may go."""

import requests

from transforms.stream_load import StreamLoadConfig
from transforms.stream_load.transport import Transport
import pytest

pytestmark = pytest.mark.transform


def test_an_https_fe_redirecting_to_a_plain_http_be_is_warned_about(caplog):

  class _Session:
    def request(self, method, url, **kwargs):
      response = requests.Response()
      response.status_code = 307
      response.headers['Location'] = 'http://root:pw@be1:8040/api/db/t/_stream_load'
      return response

    def close(self):
      pass

  transport = Transport(StreamLoadConfig(fe_nodes=('https://fe1:8030',), user='root',
                                         password='pw'), session=_Session())
  be, fe = transport.resolve_be('/api/db/t/_stream_load', {}, 'db.t', 'l')
  assert (be, fe) == ('http://be1:8040', 'https://fe1:8030')
  assert 'plain http' in caplog.text and 'pw' not in caplog.text
