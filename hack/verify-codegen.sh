#!/usr/bin/env bash
# Fails when generated code differs from what hack/update-codegen.sh produces:
# generated files are never edited by hand.
set -o errexit -o nounset -o pipefail

SCRIPT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "${TMP}"' EXIT

# Generate in a copy of the tree so a failed verify leaves the work tree alone.
cd "${SCRIPT_ROOT}"
git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "${TMP}/"
(cd "${TMP}" && GOFLAGS="${GOFLAGS:-} -mod=mod" bash hack/update-codegen.sh >/dev/null)

status=0
for dir in pkg/generated pkg/apis hack/api-rules-violations.list; do
  if ! diff -Nru "${SCRIPT_ROOT}/${dir}" "${TMP}/${dir}" >"${TMP}/diff" 2>&1; then
    echo "${dir} is out of date; run 'make generate':" >&2
    head -50 "${TMP}/diff" >&2
    status=1
  fi
done
exit ${status}
