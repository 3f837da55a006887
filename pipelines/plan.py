"""``--plan``: what the job would do, printed, with nothing run.

The job's own flags plus ``--plan`` print which table each topic's rows reach (as they exist in
the cluster now, or not yet), and with ``--ddl_topic`` the statements the schema change topic's
changes would send, in order, planned against the cluster's tables as they are -- the same
planning a run does (``SchemaChangeApplier`` in a dry run), so a run right after does what the
plan says.  What the policy leaves out is listed too.  Nothing is created, altered or committed.
"""

from __future__ import annotations

from typing import List, Optional

from pipelines.config import ConfigurationError, PipelineConfig
from transforms.errors import LoaderError
from transforms.records.routing import debezium_topic_source

__all__ = ['PLAN_FLAG', 'plan_lines']

PLAN_FLAG = '--plan'
_LIST_TIMEOUT_SECS = 30


def _topics(config: PipelineConfig) -> List[str]:
  """The topics the job reads (a pattern: those Kafka has now)."""
  import confluent_kafka  # pylint: disable=import-outside-toplevel
  from transforms.kafka.topics import TopicSelector  # pylint: disable=import-outside-toplevel
  settings = config.kafka
  if not settings.topic_pattern:
    return list(settings.topics)
  consumer = confluent_kafka.Consumer(dict(settings.consumer_config))
  try:
    metadata = consumer.list_topics(timeout=_LIST_TIMEOUT_SECS)
  except confluent_kafka.KafkaException as error:
    raise ConfigurationError(f'--plan: cannot list the topics: {error}') from None
  finally:
    consumer.close()
  selector = TopicSelector(pattern=settings.topic_pattern, excluded=settings.excluded_topics)
  return selector.select(metadata.topics)


def _never_read(config: PipelineConfig, topic: str) -> bool:
  return config.kafka.skip_topic is not None and config.kafka.skip_topic(topic)


def _target(config: PipelineConfig, topic: str) -> Optional[str]:
  """The table a topic's rows reach; None: not selected; a text in parentheses when each
  record says."""
  routing = config.routing
  if routing.table:
    return routing.table
  if routing.topic_table_map:
    return routing.topic_table_map.get(topic, '(not mapped)')
  if routing.table_field:
    return f'(field {routing.table_field} of each record)'
  named = debezium_topic_source(topic)
  if named is None:
    return '(the source each record names)'
  db, schema, table = named
  naming = config.schema.ddl.naming if config.schema.ddl is not None else routing.naming
  if naming is None:
    return f'{db}.{table}'
  named = naming.target(db, table, topic=topic, schema=schema)
  return None if named is None else named[0]


def plan_lines(config: PipelineConfig) -> List[str]:
  """The plan, as lines to print.

  Raises:
    ConfigurationError: Kafka or the FE cannot be asked.
  """
  from transforms.schema.ddl_apply import SchemaChangeApplier  # pylint: disable=import-outside-toplevel
  from transforms.schema.evolution import SchemaEvolution  # pylint: disable=import-outside-toplevel
  evolution = SchemaEvolution(config.schema)
  try:
    topics = _topics(config)
    lines = [f'plan: {len(topics)} topic(s)']
    exists = {}
    for topic in topics:
      if _never_read(config, topic):
        lines.append(f'  {topic} -> never read (its name shows --exclude_tables leaves it out)')
        continue
      target = _target(config, topic)
      if target is None:
        lines.append(f'  {topic} -> skipped (--include_tables / --exclude_tables)')
        continue
      if target.startswith('('):
        lines.append(f'  {topic} -> {target}')
        continue
      if target not in exists:
        exists[target] = evolution.table_columns(target) is not None
      lines.append(f'  {topic} -> {target} ({"exists" if exists[target] else "not yet"})')
    ddl = config.schema.ddl
    if ddl is None:
      if config.schema.create_tables:
        lines.append('tables that do not exist are created from their first rows '
                     '(--create_tables)')
      return lines
    applier = SchemaChangeApplier(config.schema, evolution, dry_run=True)
    try:
      records = applier.read(catch_up=True)
      for record in records:
        for step in applier.steps(record):
          if record.done:
            applier.remember(step)
          else:
            applier.run(step)
    finally:
      applier.close()
    done = sum(1 for record in records if record.done)
    lines.append(f'schema change topic {ddl.topic}: {len(records)} record(s), {done} run before '
                 f'(committed); statements to run ({len(applier.planned)}):')
    lines.extend(f'  {statement};' for _, statement in applier.planned)
    if applier.reports:
      lines.append(f'not applied ({len(applier.reports)}):')
      lines.extend(f'  {report}' for report in applier.reports)
    return lines
  except LoaderError as error:
    raise ConfigurationError(f'--plan: {error}') from None
  finally:
    evolution.close()
