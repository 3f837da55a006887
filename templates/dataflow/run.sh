#!/usr/bin/env bash
# Launches a streaming Dataflow job from the Flex Template built by build.sh.
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-bucket \
#   BOOTSTRAP_SERVERS=10.0.0.5:9092,10.0.0.6:9092 TOPICS=orders,users GROUP_ID=orders-to-doris \
#   FE_NODES=http://10.0.1.10:8030,http://10.0.1.11:8030 TABLE=shop.orders \
#   STREAM_LOAD_PASSWORD=... templates/dataflow/run.sh [extra gcloud flags, e.g. --subnetwork=...]
#
# Routing: set exactly one of TABLE, TOPIC_TABLE_MAP, TABLE_FIELD (or CDC_FORMAT with a
# CDC envelope). Any other template parameter: EXTRA_PARAMETERS="batch_rows=50000~target=starrocks"
# ('~'-separated, see below).
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
: "${BOOTSTRAP_SERVERS:?}" "${TOPICS:?}" "${GROUP_ID:?}" "${FE_NODES:?}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/kafka-to-doris.json}"
JOB_NAME="${JOB_NAME:-kafka-to-doris-$(date -u +%Y%m%d-%H%M%S)}"

# Values hold commas (topic and FE lists): '^~^' makes '~' gcloud's separator
# between parameters (gcloud topic escaping).
params="^~^bootstrap_servers=${BOOTSTRAP_SERVERS}~topics=${TOPICS}~group_id=${GROUP_ID}"
params+="~fe_nodes=${FE_NODES}~user=${DORIS_USER:-root}"
[[ -n "${STREAM_LOAD_PASSWORD:-}" ]] && params+="~password=${STREAM_LOAD_PASSWORD}"
[[ -n "${TABLE:-}" ]] && params+="~table=${TABLE}"
[[ -n "${TOPIC_TABLE_MAP:-}" ]] && params+="~topic_table_map=${TOPIC_TABLE_MAP}"
[[ -n "${TABLE_FIELD:-}" ]] && params+="~table_field=${TABLE_FIELD}"
[[ -n "${CDC_FORMAT:-}" ]] && params+="~cdc_format=${CDC_FORMAT}"
params+="~dead_letter_path=${DEAD_LETTER_PATH:-gs://${BUCKET}/dead-letters/${GROUP_ID}}"
[[ -n "${EXTRA_PARAMETERS:-}" ]] && params+="~${EXTRA_PARAMETERS}"

gcloud dataflow flex-template run "$JOB_NAME" \
  --project "$PROJECT" \
  --region "$REGION" \
  --template-file-gcs-location "$TEMPLATE" \
  --temp-location "gs://${BUCKET}/tmp" \
  --staging-location "gs://${BUCKET}/staging" \
  --enable-streaming-engine \
  --parameters "$params" \
  "$@"
