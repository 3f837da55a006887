"""Schema evolution and table creation: tables follow the columns of the rows loaded into them.

One job per module: ``config`` (settings, validated once), ``types`` (Doris
types from values, DDL text; pure), ``fe_sql`` (columns and DDL over the
FE's HTTP API), ``evolution`` (``SchemaEvolution``, per worker), ``transform``
(``EvolveSchema``, the graph's step between parsing and batching), ``debezium_ddl`` (Debezium
schema change events -> the ops and SQL that follow them; pure), ``ddl_topic`` (the schema
change topic's reader), ``ddl_apply`` (runs its changes in order), ``ddl_runner`` (the worker
process elected to run the changes that must run once).  Doris only:
StarRocks takes DDL over the MySQL protocol alone.
"""

from transforms.schema.config import (ADD_COLUMNS, MODES, NONE, SchemaEvolutionConfig,
                                      TableDdlOptions)
from transforms.schema.debezium_ddl import (TableChange, TableSchema, apply_policy,
                                            parse_schema_change, plan_changes, policy_allows,
                                            render)
from transforms.schema.evolution import SCHEMA_CHANGE_FAILED, SchemaEvolution
from transforms.schema.fe_sql import (FeAuthError, FeSqlClient, FeSqlError, FeUnavailableError,
                                      SqlRejectedError)
from transforms.schema.transform import EvolveSchema

__all__ = [
    'ADD_COLUMNS',
    'MODES',
    'NONE',
    'SCHEMA_CHANGE_FAILED',
    'EvolveSchema',
    'FeAuthError',
    'FeSqlClient',
    'FeSqlError',
    'FeUnavailableError',
    'SchemaEvolution',
    'SchemaEvolutionConfig',
    'SqlRejectedError',
    'TableChange',
    'TableDdlOptions',
    'TableSchema',
    'apply_policy',
    'parse_schema_change',
    'plan_changes',
    'policy_allows',
    'render',
]
