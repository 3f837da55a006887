"""The README's first command: the demo runs end to end and every table holds what it should."""

import re
import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_the_demo_loads_every_table_including_the_avro_topic(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'devtools.demo', '--scale', '50',
                           '--work-dir', str(tmp_path / 'demo')],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rows = {m.group(1): tuple(int(n) for n in m.group(2, 3, 4))
          for m in re.finditer(r'^(demo\.\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+', result.stdout, re.M)}
  # (in Kafka, loaded, in table) at scale 50: 20 x 50 events + 4 bad records; 100 users created,
  # 25 updated, 10 deleted, one change without a key; 150 orders in 3 states; 250 views of 50
  # pages; 10 Avro payments, 2 updated, 2 deleted (ids 1 and 8).
  assert rows['demo.events'] == (1004, 1000, 1000)
  assert rows['demo.users'][2] == 90
  assert rows['demo.orders'] == (450, 450, 150)
  assert rows['demo.page_views'] == (250, 250, 50)
  assert rows['demo.payments'] == (14, 14, 8)
  assert 'added the column `method`' in result.stdout
  assert 'demo: OK' in result.stdout
  # "in table" comes through the server's MySQL port; the demo says how to look yourself.
  assert 'mysql -h 127.0.0.1 -P 9030 -u root' in result.stdout


def test_the_database_sync_demo_lands_every_table_as_the_source_has_it(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'devtools.demo', '--database-sync',
                           '--work-dir', str(tmp_path / 'demo')],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rows = {m.group(1): (m.group(2), int(m.group(3)), int(m.group(4)), m.group(5)) for m in
          re.finditer(r'^(ods\.\w+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\S+)$', result.stdout, re.M)}
  assert len(rows) == 24
  assert rows['ods.shop__orders'][0] == 'id,_source_db,_source_table'
  assert rows['ods.shop__order_items'][0] == 'order_id,line'
  assert rows['ods.shop__customers'][3] == 'id,full_name,score,email'   # renamed, added
  assert all(got == want for _, got, want, _ in rows.values())
  assert 'demo: OK' in result.stdout
