#!/usr/bin/env bash
# Stargate on a local kind cluster (needs Docker and kind):
#   hack/kind-up.sh            # cluster "stargate", image, certificates, deploy, samples
#   kubectl get hardwares -n dc-west
# The mock datacenters run in the cluster as Deployments; Stargate reaches
# them through their Services.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cluster="${KIND_CLUSTER:-stargate}"
image="stargate-apiserver:dev"

for tool in docker kind kubectl; do
  command -v "${tool}" >/dev/null || { echo "kind-up: ${tool} is required" >&2; exit 1; }
done
kind get clusters | grep -qx "${cluster}" || kind create cluster --name "${cluster}"
kubectl config use-context "kind-${cluster}"

docker build -t "${image}" .
kind load docker-image "${image}" --name "${cluster}"

hack/gen-certs.sh .stargate/deploy
kubectl apply -f artifacts/deploy/base/namespace.yaml
# One token per mock datacenter, read by both sides from the same Secret.
tokens="$(mktemp -d)"; trap 'rm -rf "${tokens}"' EXIT
for dc in dc-west dc-east; do head -c 32 /dev/urandom | base64 | tr -d '\n' > "${tokens}/${dc}"; done
kubectl -n stargate-system create secret generic stargate-datacenter-credentials \
  --from-file=dc-west="${tokens}/dc-west" --from-file=dc-east="${tokens}/dc-east" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -k artifacts/deploy/dev
kubectl -n stargate-system rollout status statefulset/stargate-etcd --timeout=5m
kubectl -n stargate-system rollout status deployment/stargate-apiserver --timeout=5m
kubectl wait --for=condition=Available apiservice/v1alpha1.stargate.io --timeout=5m

# The samples, with the mock datacenters' in-cluster addresses.
sed -e 's#http://127.0.0.1:8080#http://mockdc-west.stargate-system.svc#' \
    -e 's#http://127.0.0.1:8081#http://mockdc-east.stargate-system.svc#' artifacts/samples/datacenters.yaml | kubectl apply -f -
kubectl apply -f artifacts/samples/hardware.yaml -f artifacts/samples/template.yaml
echo "Stargate is up on kind-${cluster}: kubectl get stargate -A"
