#!/usr/bin/env bash
# Submits the Kafka -> Doris/StarRocks pipeline to Flink (templates/flink/README.md).
#
#   templates/flink/run_flink.sh MODE [extra pipeline flags...]
#
# MODE:
#   local      Embedded Flink started by Beam's Flink job server jar ([local]), from
#              FLINK_JOB_SERVER_JAR (e.g. $(python -m devtools.flink)); the Python workers
#              in this process (LOOPBACK), or in a worker pool's processes
#              (ENVIRONMENT_TYPE=EXTERNAL ENVIRONMENT_CONFIG=localhost:50000 with
#              a worker pool from devtools/worker_pool.py on port 50000). Needs Java 17 here.
#   remote     A running Flink cluster (FLINK_MASTER=host:8081); Beam starts the Flink
#              job server jar here (Java 11+) and submits to the cluster. Python
#              workers: ENVIRONMENT_TYPE=DOCKER (default) | PROCESS | EXTERNAL.
#   uber-jar   Like remote, but Beam packs the pipeline into the job server jar and
#              uploads it over Flink's REST API: no job server, no Java here.
#   portable   A job server you run yourself (JOB_ENDPOINT=host:8099), e.g.
#              `docker run --net=host apache/beam_flink${FLINK_VERSION}_job_server:${BEAM_VERSION}
#              --flink-master=$FLINK_MASTER`; --runner=PortableRunner.
#
# Pipeline settings (environment): BOOTSTRAP_SERVERS TOPICS GROUP_ID FE_NODES TABLE
# (or pass --topic_table_map/--table_field/--cdc_format as extra flags), DORIS_USER,
# STREAM_LOAD_PASSWORD (read from the environment by the pipeline, never a flag here).
set -euo pipefail

mode="${1:?usage: run_flink.sh local|remote|uber-jar|portable [flags...]}"
shift
cd "$(dirname "$0")/../.."   # the repository root: ./setup.py and the packages

PYTHON="${PYTHON:-python}"
FLINK_VERSION="${FLINK_VERSION:-1.19}"          # must match the cluster (and a published job server)
FLINK_JOB_SERVER_JAR="${FLINK_JOB_SERVER_JAR:-}"  # local: the job server jar (devtools/flink.py)
FLINK_MASTER="${FLINK_MASTER:-localhost:8081}"
PARALLELISM="${PARALLELISM:-4}"
CHECKPOINT_MS="${CHECKPOINT_MS:-60000}"
ENVIRONMENT_TYPE="${ENVIRONMENT_TYPE:-DOCKER}"
# DOCKER: the worker image (Beam's SDK image with this package installed, see README);
# PROCESS: {"command": "/opt/apache/beam/boot"}; EXTERNAL: host:port of a worker pool.
ENVIRONMENT_CONFIG="${ENVIRONMENT_CONFIG:-}"
JOB_ENDPOINT="${JOB_ENDPOINT:-localhost:8099}"

pipeline_flags=(
  --bootstrap_servers="${BOOTSTRAP_SERVERS:?set BOOTSTRAP_SERVERS}"
  --topics="${TOPICS:?set TOPICS}"
  --group_id="${GROUP_ID:?set GROUP_ID}"
  --fe_nodes="${FE_NODES:?set FE_NODES}"
  --user="${DORIS_USER:-root}"
)
[[ -n "${TABLE:-}" ]] && pipeline_flags+=(--table="${TABLE}")

# Streaming with checkpoints: Flink snapshots each partition's durable offset (the rows loaded
# or dead-lettered); the launcher adds --streaming, --finish_bundle_before_checkpointing and
# --shutdown_sources_after_idle_ms (pipelines/runners.py).
flink_flags=(
  --flink_version="${FLINK_VERSION}"
  --parallelism="${PARALLELISM}"
  --checkpointing_interval="${CHECKPOINT_MS}"
  --checkpointing_mode=EXACTLY_ONCE
  --min_pause_between_checkpoints=10000
)
# On a cluster: keep the last checkpoint when the job is cancelled, to restart from it
# (needs a checkpoint directory in the cluster's Flink configuration, e.g. s3:// or hdfs://).
cluster_flags=(
  --externalized_checkpoints_enabled
  --retain_externalized_checkpoints_on_cancellation
)
[[ -n "${SAVEPOINT_PATH:-}" ]] && cluster_flags+=(--savepoint_path="${SAVEPOINT_PATH}")

environment_flags=(--environment_type="${ENVIRONMENT_TYPE}")
[[ -n "${ENVIRONMENT_CONFIG}" ]] && environment_flags+=(--environment_config="${ENVIRONMENT_CONFIG}")

case "$mode" in
  local)
    [[ "${ENVIRONMENT_TYPE}" == DOCKER ]] && environment_flags=(--environment_type=LOOPBACK)
    exec "$PYTHON" -m pipelines.kafka_to_doris --runner=FlinkRunner --flink_master='[local]' \
      --flink_job_server_jar="${FLINK_JOB_SERVER_JAR:?set FLINK_JOB_SERVER_JAR}" \
      "${environment_flags[@]}" "${flink_flags[@]}" "${pipeline_flags[@]}" "$@"
    ;;
  remote)
    exec "$PYTHON" -m pipelines.kafka_to_doris --runner=FlinkRunner \
      --flink_master="${FLINK_MASTER}" "${environment_flags[@]}" --setup_file=./setup.py \
      "${flink_flags[@]}" "${cluster_flags[@]}" "${pipeline_flags[@]}" "$@"
    ;;
  uber-jar)
    exec "$PYTHON" -m pipelines.kafka_to_doris --runner=FlinkRunner \
      --flink_master="${FLINK_MASTER}" --flink_submit_uber_jar "${environment_flags[@]}" \
      --setup_file=./setup.py "${flink_flags[@]}" "${cluster_flags[@]}" "${pipeline_flags[@]}" "$@"
    ;;
  portable)
    exec "$PYTHON" -m pipelines.kafka_to_doris --runner=PortableRunner \
      --job_endpoint="${JOB_ENDPOINT}" "${environment_flags[@]}" --setup_file=./setup.py \
      "${flink_flags[@]}" "${cluster_flags[@]}" "${pipeline_flags[@]}" "$@"
    ;;
  *)
    echo "unknown mode: $mode (local|remote|uber-jar|portable)" >&2
    exit 2
    ;;
esac
