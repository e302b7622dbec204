#!/usr/bin/env bash
# `make run`: a standalone Stargate on the embedded defaults, in the
# foreground, with the sample inventory applied once it serves. Ctrl-C stops
# everything it started.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA_DIR=${DATA_DIR:-${ROOT}/.stargate}
PORT=${PORT:-8443}
BIN=${ROOT}/bin
KUBECONFIG_FILE=${DATA_DIR}/kubeconfig

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

mkdir -p "${DATA_DIR}"
rm -f "${KUBECONFIG_FILE}"

# One bearer token per datacenter, made once: the mocks require it and
# stargate-apiserver reads it from --datacenter-credentials-dir.
CREDS=${DATA_DIR}/datacenter-credentials
mkdir -p "${CREDS}"
chmod 700 "${CREDS}"
for dc in dc-west dc-east; do
  [[ -s ${CREDS}/${dc} ]] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' >"${CREDS}/${dc}")
done

# The mock datacenters on the seed's ports; a repave takes 30 s as in the seed.
"${BIN}/mockdc" -v=1 --name=dc-west --listen=127.0.0.1:8080 --token-file="${CREDS}/dc-west" \
  --inventory="${ROOT}/artifacts/samples/mockdc-inventory-dc-west.yaml" \
  --state-file="${DATA_DIR}/mockdc-dc-west.json" &
pids+=($!)
"${BIN}/mockdc" -v=1 --name=dc-east --listen=127.0.0.1:8081 --token-file="${CREDS}/dc-east" \
  --state-file="${DATA_DIR}/mockdc-dc-east.json" &
pids+=($!)

"${BIN}/stargate-apiserver" --standalone --data-dir="${DATA_DIR}" \
  --bind-address=127.0.0.1 --secure-port="${PORT}" --datacenter-credentials-dir="${CREDS}" "$@" &
pids+=($!)

# The server writes its kubeconfig once it serves.
for _ in $(seq 1 300); do
  [[ -s ${KUBECONFIG_FILE} ]] && break
  if ! kill -0 "${pids[-1]}" 2>/dev/null; then
    echo "stargate-apiserver exited; see the messages above" >&2
    exit 1
  fi
  sleep 0.2
done

if command -v kubectl >/dev/null; then
  KUBECONFIG=${KUBECONFIG_FILE} kubectl apply \
    -f "${ROOT}/artifacts/samples/datacenters.yaml" \
    -f "${ROOT}/artifacts/samples/hardware.yaml" \
    -f "${ROOT}/artifacts/samples/template.yaml"
else
  echo "kubectl not found: skipping the samples" >&2
fi

cat <<MSG

Stargate is serving on https://127.0.0.1:${PORT}; mock datacenters dc-west on
127.0.0.1:8080 and dc-east on 127.0.0.1:8081. In another terminal:

  export KUBECONFIG=${KUBECONFIG_FILE}
  kubectl get hardwares -n dc-west
  kubectl apply -f artifacts/samples/job-repave.yaml
  kubectl get jobs.stargate.io -n dc-west -w

Ctrl-C stops it; the data stays in ${DATA_DIR}.
MSG

wait -n "${pids[@]}"
