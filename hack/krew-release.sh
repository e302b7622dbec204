#!/usr/bin/env bash
# Builds the krew release of `kubectl stargate` into OUT (default bin/krew/):
# kubectl-stargate cross-built for each platform of artifacts/krew/stargate.yaml
# (CGO_ENABLED=0, -trimpath, stripped), packed as kubectl-stargate_<os>_<arch>.tar.gz
# (with the LICENSE when the repository has one), and stargate.yaml, the
# manifest with each archive's URL and SHA-256 filled in.
#
#   VERSION      the release's version (default: git describe --tags --always);
#                the manifest's spec.version is VERSION when it is a semantic
#                version (v1.2.3, v1.2.3-4-gabcdef), else v0.0.0-git-VERSION.
#   RELEASE_URL  where the archives will be uploaded: each uri is
#                RELEASE_URL/VERSION/kubectl-stargate_<os>_<arch>.tar.gz.
#                Unset, each uri is the local archive's file:// URL, which
#                krew cannot download: install with --archive.
#
# Installing from the build, without a published release:
#   kubectl krew install --manifest=bin/krew/stargate.yaml \
#     --archive=bin/krew/kubectl-stargate_linux_amd64.tar.gz
set -o errexit -o nounset -o pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${root}"
GO="${GO:-go}"
VERSION="${VERSION:-$(git describe --tags --always)}"
RELEASE_URL="${RELEASE_URL:-}"
OUT="${OUT:-${root}/bin/krew}"
template="${root}/artifacts/krew/stargate.yaml"
platforms=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)

semver='^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
version="${VERSION}"
if [[ ! "${version}" =~ ${semver} ]]; then
  version="v0.0.0-git-${VERSION//[^0-9A-Za-z-]/-}"
fi

sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# pack writes a gzipped tar of the files in dir, the same bytes for the
# same files (GNU tar: sorted, no owner or time; gzip without a name).
pack() {
  local dir="$1" archive="$2"
  shift 2
  if tar --version 2>/dev/null | grep -q 'GNU tar'; then
    tar -C "${dir}" --sort=name --owner=0 --group=0 --numeric-owner --mtime='1970-01-01 00:00:00Z' -cf - "$@" | gzip -n -9 >"${archive}"
  else
    tar -C "${dir}" -cf - "$@" | gzip -n -9 >"${archive}"
  fi
}

rm -rf "${OUT}"
mkdir -p "${OUT}"
OUT="$(cd "${OUT}" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "${stage}"' EXIT

manifest="$(sed -e '/^#/d' -e "s|RELEASE_VERSION|${version}|" "${template}")"
for platform in "${platforms[@]}"; do
  os="${platform%/*}" arch="${platform#*/}"
  name="kubectl-stargate_${os}_${arch}"
  dir="${stage}/${name}"
  mkdir -p "${dir}"
  CGO_ENABLED=0 GOOS="${os}" GOARCH="${arch}" "${GO}" build -trimpath -ldflags="-s -w" -o "${dir}/kubectl-stargate" ./cmd/kubectl-stargate
  files=(kubectl-stargate)
  if [[ -f LICENSE ]]; then
    cp LICENSE "${dir}/"
    files+=(LICENSE)
  fi
  archive="${OUT}/${name}.tar.gz"
  pack "${dir}" "${archive}" "${files[@]}"
  if [[ -n "${RELEASE_URL}" ]]; then
    uri="${RELEASE_URL%/}/${VERSION}/${name}.tar.gz"
  else
    uri="file://${archive}"
  fi
  key="$(tr '[:lower:]' '[:upper:]' <<<"${os}_${arch}")"
  manifest="$(sed -e "s|RELEASE_URI_${key}\$|${uri}|" -e "s|RELEASE_SHA256_${key}\$|$(sha256 "${archive}")|" <<<"${manifest}")"
  echo "${archive}"
done

if grep -n 'RELEASE_' <<<"${manifest}" >&2; then
  echo "krew-release: ${template} has a platform this script does not build (above)" >&2
  exit 1
fi
{
  echo "# kubectl stargate ${version} for krew, written by hack/krew-release.sh from"
  echo "# artifacts/krew/stargate.yaml."
  echo "${manifest}"
} >"${OUT}/stargate.yaml"
echo "${OUT}/stargate.yaml"
if [[ -z "${RELEASE_URL}" ]]; then
  echo "RELEASE_URL unset: the uris point at the archives here; install with" >&2
  echo "  kubectl krew install --manifest=${OUT}/stargate.yaml --archive=${OUT}/kubectl-stargate_<os>_<arch>.tar.gz" >&2
fi
