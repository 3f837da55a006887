"""The front ends of the loader: the command line, Beam YAML, the templates' entry points.

``options`` (every flag, one list), ``config`` (the flags validated into one
``PipelineConfig``), ``table_config`` (per-table YAML), ``preflight`` (start-up
checks), ``assembly`` (the one graph), ``kafka_to_doris`` (the CLI),
``yaml_provider`` (Beam YAML).
"""
