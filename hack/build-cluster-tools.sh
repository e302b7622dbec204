#!/usr/bin/env bash
# Builds, once, the real kube-apiserver and kubectl (k8s.io/kubernetes v1.37.2) and etcd
# that the end-to-end tests and benchmarks start on 127.0.0.1. The binaries are
# cached under .cache/cluster/<versions>/ (git-ignored); a second run only
# checks that they are there. Prints the directory holding them.
set -o errexit -o nounset -o pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${root}/hack/tools/cluster"
cd "${tools}"

kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
etcd_version="$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
out="${CLUSTER_TOOLS_DIR:-${root}/.cache/cluster/kube-${kube_version}-etcd-${etcd_version}}"

if [[ -x "${out}/kube-apiserver" && -x "${out}/kubectl" && -x "${out}/etcd" ]]; then
  echo "${out}"
  exit 0
fi
mkdir -p "${out}"
minor="${kube_version#v1.}"; minor="${minor%%.*}"
ldflags=(
  -s -w
  -X "k8s.io/component-base/version.gitVersion=${kube_version}"
  -X "k8s.io/component-base/version.gitMajor=1"
  -X "k8s.io/component-base/version.gitMinor=${minor}"
  -X "k8s.io/component-base/version.gitTreeState=clean"
  -X "k8s.io/client-go/pkg/version.gitVersion=${kube_version}"
)
echo "building kube-apiserver and kubectl ${kube_version} and etcd ${etcd_version} into ${out} (5-15 minutes the first time)" >&2
# Built into a temporary name and moved, so an interrupted build is never
# mistaken for a finished one.
for cmd in kube-apiserver kubectl; do
  [[ -x "${out}/${cmd}" ]] && continue
  go build -trimpath -ldflags "${ldflags[*]}" -o "${out}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}" >&2
  mv "${out}/${cmd}.tmp" "${out}/${cmd}"
done
if [[ ! -x "${out}/etcd" ]]; then
  go build -trimpath -ldflags "-s -w" -o "${out}/etcd.tmp" ./etcd >&2
  mv "${out}/etcd.tmp" "${out}/etcd"
fi
echo "${out}"
