"""How fast the local Stream Load server accepts NDJSON in count-only mode.

The server must never be the bottleneck of a benchmark: this sends 256 MiB of
NDJSON (~90-byte rows) through the FE redirect to a count-only BE in one
load, plain and gzip-compressed, and prints MB/s.  Target: >= 200 MB/s plain.
Run: ``.venv/bin/python bench/emulator_bench.py``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stream_load_emulator import StreamLoadServer  # pylint: disable=wrong-import-position

SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'pipelines',
                      'samples', 'demo_schema.sql')


def load(server, body: bytes, headers: dict) -> float:
  session = requests.Session()
  auth = ('root', 'bench')
  base = {'Expect': '100-continue', 'format': 'json', 'read_json_by_line': 'true'}
  base.update(headers)
  location = session.put(server.fe_url + '/api/demo/events/_stream_load', headers=base,
                         auth=auth, allow_redirects=False).headers['Location']
  started = time.perf_counter()
  result = session.put(location, data=body, headers=base, auth=auth).json()
  secs = time.perf_counter() - started
  assert result['Status'] == 'Success', result
  return secs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--mb', type=int, default=256, help='MB of NDJSON to load (default 256)')
  args = parser.parse_args()
  row = b'{"event_id": 123456, "user_id": 42, "event_type": "click", "payload": "%s"}\n' % (
      b'x' * 60)
  body = row * (args.mb * 1024 * 1024 // len(row))
  with StreamLoadServer(schema_path=SCHEMA, user='root', password='bench', count_only=True) as srv:
    plain = load(srv, body, {})
    compressed = gzip.compress(body, compresslevel=1)
    gz = load(srv, compressed, {'compress_type': 'gz'})
  mb = len(body) / 1e6
  print(f'gzip: {mb / gz:.0f} MB/s of uncompressed NDJSON ({len(compressed) / 1e6:.0f} MB sent)')
  print(f'emulator count-only: {mb / plain:.0f} MB/s of NDJSON (target >= 200)')


if __name__ == '__main__':
  main()
