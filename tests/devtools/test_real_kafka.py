"""The real-Kafka tooling without a JVM: kafka-consumer-groups output, tool checks, jar stamps."""

import pytest

from devtools import jars
from devtools.real_kafka import GroupOffsets, parse_group_description

pytestmark = pytest.mark.unit

# kafka-consumer-groups --describe of Kafka 4.1.1 for a group that only stores offsets (the
# loader assign()s partitions): no active members, partitions without a commit are not listed.
DESCRIBE_OUTPUT = """
Consumer group 'assigned-60e7b4' has no active members.

GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID
assigned-60e7b4 assign-60e7b4   2          100             100             0               -               -               -
assigned-60e7b4 assign-60e7b4   3          25              100             75              -               -               -
assigned-60e7b4 other           0          -               7               -               -               -               -
"""


def test_kafka_consumer_groups_describe_is_parsed_per_partition():
  assert parse_group_description(DESCRIBE_OUTPUT) == [
      GroupOffsets('assign-60e7b4', 2, 100, 100, 0),
      GroupOffsets('assign-60e7b4', 3, 25, 100, 75),
      GroupOffsets('other', 0, None, 7, None),
  ]


def test_an_unknown_group_describes_as_no_rows():
  # The tool exits 0 for a group that does not exist: only its message tells.
  assert parse_group_description("\nConsumer group 'nobody' does not exist.\n") == []


def test_missing_java_is_the_reason_given(monkeypatch):
  monkeypatch.setattr(jars.shutil, 'which', lambda name: None)
  assert 'java is not on PATH' in jars.missing_tools('kafka')
  assert not jars.java_available() and not jars.maven_available()


def test_maven_is_needed_only_until_the_jars_are_fetched(monkeypatch):
  monkeypatch.setattr(jars, 'java_version', lambda: 17)
  monkeypatch.setattr(jars, 'maven_available', lambda: False)
  monkeypatch.setattr(jars, 'is_fetched', lambda name: False)
  assert 'mvn is not on PATH' in jars.missing_tools('kafka')
  monkeypatch.setattr(jars, 'is_fetched', lambda name: True)
  assert jars.missing_tools('kafka') is None
  monkeypatch.setattr(jars, 'java_version', lambda: 11)
  assert 'too old' in jars.missing_tools('kafka')


def test_a_lib_dir_counts_as_fetched_only_for_the_pom_it_was_made_from(tmp_path, monkeypatch):
  monkeypatch.setattr(jars, 'JARS_ROOT', str(tmp_path / '.jars'))
  monkeypatch.setattr(jars, 'MAVEN_ROOT', str(tmp_path / 'maven'))
  (tmp_path / 'maven' / 'tool').mkdir(parents=True)
  pom = tmp_path / 'maven' / 'tool' / 'pom.xml'
  pom.write_text('<project>v1</project>')
  assert not jars.is_fetched('tool')
  (tmp_path / '.jars' / 'tool' / 'lib').mkdir(parents=True)
  (tmp_path / '.jars' / 'tool' / '.complete').write_text(jars._pom_digest('tool') + '\n')  # pylint: disable=protected-access
  assert jars.is_fetched('tool')
  pom.write_text('<project>v2</project>')  # the pom changed: fetch again
  assert not jars.is_fetched('tool')
