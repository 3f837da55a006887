"""The front ends of the loader: the command line, Beam YAML, the templates' entry points.

``options`` (every flag, one list), ``config`` (the flags validated into one
``PipelineConfig``), ``table_config`` (per-table YAML), ``preflight`` (start-up
checks), ``assembly`` (the one graph), ``kafka_to_doris`` (the CLI),
``yaml_provider`` (Beam YAML).
"""

import logging as _logging


def _drop_beams_apitools_notice(record: _logging.LogRecord) -> bool:
  # ``import apache_beam`` logs "apitools not found, and bigquery client libraries are not
  # available ..." on the root logger when the Google Cloud extras are absent: nothing a user of
  # this loader can or needs to act on.
  return not str(record.msg).startswith('apitools not found')


_logging.getLogger().addFilter(_drop_beams_apitools_notice)
