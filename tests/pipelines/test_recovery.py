"""Recovery at start, against the mock Kafka and the local Stream Load server.

Each crash point leaves the journal and the cluster in a state; recovery must find which batches
the cluster holds (skip them), which it does not (forget them: they load again), and settle
two-phase loads that were prepared and never committed.
"""

import pytest
import requests

from tests.harness import PASSWORD
from pipelines.recovery import recover
from transforms.delivery import (JournalConfig, JournalEntry, LoadJournal, LoadedRanges,
                                 ranges_of, read_journal)
from transforms.stream_load import StreamLoadClient, StreamLoadConfig
from transforms.stream_load.bodies import encode_rows
from transforms.types import Row

pytestmark = pytest.mark.transform


def _rows(topic, offsets, partition=0):
  return [Row('demo.events', {'event_id': o, 'event_type': 'e'}, 'upsert', topic, partition, o, 30)
          for o in offsets]


def _entry(group, label, rows, loaded=False):
  return JournalEntry(label=label, group=group, table='demo.events', shard=0, shards=1,
                      key_columns=(), ranges=tuple(ranges_of(rows)), rows=len(rows),
                      loaded=loaded)


@pytest.fixture
def setup(kafka_cluster, stream_load_server):
  topic = kafka_cluster.unique_topic('recover')
  kafka_cluster.produce(topic, [b'{}'] * 40, partition=0)
  group = f'g-{topic}'
  journal_config = JournalConfig(kafka_cluster.consumer_config(group), f'journal-{topic}')
  load_config = StreamLoadConfig(fe_nodes=tuple(stream_load_server.fe_urls), user='root',
                                 password=PASSWORD, label_state_timeout_secs=5)
  return kafka_cluster, stream_load_server, topic, group, journal_config, load_config


def _load(load_config, label, rows, two_phase=False):
  config = StreamLoadConfig(fe_nodes=load_config.fe_nodes, user='root', password=PASSWORD,
                            two_phase_commit=two_phase)
  with StreamLoadClient(config) as client:
    client.load('demo.events', encode_rows(rows).body, label, rows=len(rows))


def test_recovery_skips_loaded_batches_and_forgets_the_rest(setup):
  kafka, server, topic, group, journal_config, load_config = setup
  marked = _rows(topic, range(0, 10))       # loaded and marked loaded
  unmarked = _rows(topic, range(10, 20))    # loaded, killed before the mark
  never_sent = _rows(topic, range(20, 30))  # written ahead, killed before the load
  committed = _rows(topic, range(30, 35))   # loaded, marked, but its offsets... see below
  journal = LoadJournal(journal_config)
  for label, rows, loaded in (('marked', marked, True), ('unmarked', unmarked, False),
                              ('never', never_sent, False), ('old', committed, True)):
    journal.write_ahead(_entry(group, label, rows, loaded))
  journal.close()
  _load(load_config, 'unmarked', unmarked)
  # Another job's entry shares the topic and is left alone.
  other = LoadJournal(JournalConfig(kafka.consumer_config('other-group'), journal_config.topic))
  other.write_ahead(_entry('other-group', 'theirs', never_sent))
  other.close()
  # The group committed past the 'old' batch only if it committed offset 35 on partition 0;
  # commit 0 here: every batch is above the committed offset.
  kafka.commit(group, topic, {0: 0})

  report = recover(journal_config, load_config)

  assert (report.entries, report.settled) == (4, 2)
  loaded = report.loaded
  covered = sorted(r.offset for r in _rows(topic, range(40)) if loaded.covers(r))
  assert covered == list(range(0, 20)) + list(range(30, 35))
  left = {e.label: e.loaded for e in read_journal(journal_config)}
  assert left == {'marked': True, 'unmarked': True, 'old': True}  # 'never' forgotten
  assert {e.label for e in read_journal(JournalConfig(kafka.consumer_config('other-group'),
                                                      journal_config.topic))} == {'theirs'}
  assert server.query('SELECT count(*) FROM demo.events') == [(10,)]


def test_entries_behind_the_committed_offsets_are_removed(setup):
  kafka, _, topic, group, journal_config, load_config = setup
  journal = LoadJournal(journal_config)
  journal.write_ahead(_entry(group, 'done', _rows(topic, range(0, 10)), loaded=True))
  journal.close()
  kafka.commit(group, topic, {0: 10})
  report = recover(journal_config, load_config)
  assert not report.loaded and report.forgotten == 1
  assert read_journal(journal_config) == []


def test_a_prepared_two_phase_load_is_committed_and_its_rows_skipped(setup):
  kafka, server, topic, group, journal_config, load_config = setup
  rows = _rows(topic, range(0, 10))
  journal = LoadJournal(journal_config)
  journal.write_ahead(_entry(group, 'prepared', rows))
  journal.close()
  # Prepare only: a Doris 2PC load without the commit (the job died between the two).
  db_url = f'{server.fe_url}/api/demo/events/_stream_load'
  first = requests.put(db_url, data=b'', headers={'label': 'prepared', 'Expect': '100-continue',
                                                 'two_phase_commit': 'true', 'format': 'json',
                                                 'read_json_by_line': 'true'},
                       auth=('root', PASSWORD), allow_redirects=False)
  be = first.headers['Location'].split('@', 1)[1].split('/', 1)[0]
  answer = requests.put(f'http://{be}/api/demo/events/_stream_load', data=encode_rows(rows).body,
                        headers={'label': 'prepared', 'two_phase_commit': 'true',
                                 'format': 'json', 'read_json_by_line': 'true'},
                        auth=('root', PASSWORD)).json()
  assert answer['Status'] == 'Success'
  assert server.query('SELECT count(*) FROM demo.events') == [(0,)]  # precommitted

  report = recover(journal_config, load_config)

  assert report.committed_prepared == 1
  assert server.query('SELECT count(*) FROM demo.events') == [(10,)]
  assert all(report.loaded.covers(r) for r in rows)


def test_no_journal_topic_means_nothing_to_recover(setup):
  _, _, _, _, journal_config, load_config = setup
  report = recover(JournalConfig(journal_config.kafka_config, 'no-such-journal-topic'),
                   load_config)
  assert report.entries == 0 and report.loaded.entries == 0
  assert not LoadedRanges()


def test_drain_requests_and_done_reports_on_the_journal_topic_are_not_entries(setup, caplog):
  from transforms.kafka.control import KafkaStopChannel
  kafka, _, topic, group, journal_config, _ = setup
  journal = LoadJournal(journal_config)
  journal.write_ahead(_entry(group, 'an-entry', _rows(topic, range(0, 10))))
  journal.close()
  channel = KafkaStopChannel(kafka.consumer_config(group), journal_config.topic)
  channel.request('stop please')
  channel.report_done('run-1', [(topic, 0)])
  with caplog.at_level('WARNING', logger='transforms.delivery.journal'):
    assert [e.label for e in read_journal(journal_config)] == ['an-entry']
  assert not caplog.records, [r.getMessage() for r in caplog.records]
