"""A local Doris / StarRocks Stream Load server for tests, demos and benchmarks.

    from stream_load_emulator import StreamLoadServer, CostModel
    with StreamLoadServer(schema_path='pipelines/samples/demo_schema.sql',
                          password='secret') as srv:
      ...  # PUT srv.fe_url + '/api/demo/users/_stream_load'
      srv.query('SELECT count(*) FROM demo.users')

Behaviour follows Doris's Stream Load manual
(https://doris.apache.org/docs/data-operate/import/import-way/stream-load-manual) and
StarRocks's (https://docs.starrocks.io/docs/loading/StreamLoad/); see README.md here.
"""

from stream_load_emulator.cost import CostModel
from stream_load_emulator.faults import KINDS as FAULT_KINDS
from stream_load_emulator.server import StreamLoadServer

__all__ = ['StreamLoadServer', 'CostModel', 'FAULT_KINDS']
