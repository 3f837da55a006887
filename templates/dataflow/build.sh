#!/usr/bin/env bash
# Builds the Flex Template: the launcher image (Cloud Build, or local Docker with
# BUILDER=docker) and the template spec file in Cloud Storage.
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-bucket templates/dataflow/build.sh
#
# Optional: REPO (Artifact Registry repository, default dataflow-templates),
# TAG (default: the git commit), IMAGE, TEMPLATE (gs:// path of the spec file).
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
REPO="${REPO:-dataflow-templates}"
TAG="${TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo latest)}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/kafka-to-doris:${TAG}}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/kafka-to-doris.json}"
PYTHON="${PYTHON:-python}"

# metadata.json must be what FLAG_SPECS gives (the tests check this too).
"$PYTHON" templates/dataflow/generate_metadata.py --check

if [[ "${BUILDER:-cloudbuild}" == "docker" ]]; then
  docker build -f templates/dataflow/Dockerfile -t "$IMAGE" .
  docker push "$IMAGE"
else
  gcloud builds submit --project "$PROJECT" --region "$REGION" \
    --config templates/dataflow/cloudbuild.yaml --substitutions "_IMAGE=${IMAGE}" .
fi

gcloud dataflow flex-template build "$TEMPLATE" \
  --project "$PROJECT" \
  --image "$IMAGE" \
  --sdk-language PYTHON \
  --metadata-file templates/dataflow/metadata.json

echo "template: $TEMPLATE"
echo "image:    $IMAGE"
