#!/usr/bin/env bash
# Issues Stargate's serving certificate (and its CA) for a cluster deploy and
# writes a kustomize overlay that fills the Secret and the APIService caBundle:
#   hack/gen-certs.sh [out-dir]   # default .stargate/deploy
#   kubectl apply -k .stargate/deploy
# Existing valid certificates in out-dir are kept.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./hack/gencerts -out "${1:-.stargate/deploy}" -base artifacts/deploy/base
