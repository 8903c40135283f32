#!/usr/bin/env bash
# The finisher image's default base, made here when no image registry is reachable:
#   bin/base-image.sh IMAGE_TAG [SUITE] [MIRROR]
# A `debootstrap --variant=minbase` of the Debian release the project targets (bookworm: its python3 is 3.11),
# with ca-certificates, imported with `docker import`. Skipped when the daemon already holds IMAGE_TAG, so it is made
# once per data root. MIRROR defaults to the first Debian mirror of the host's apt sources.
set -euo pipefail

TAG=${1:?usage: base-image.sh IMAGE_TAG [SUITE] [MIRROR]}
SUITE=${2:-bookworm}
MIRROR=${3:-}

if docker image inspect "$TAG" >/dev/null 2>&1; then
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-image: no debootstrap (apt-get install debootstrap)" >&2; exit 1; }
if [[ -z $MIRROR ]]; then
    # one-line (deb URL suite) and deb822 (URIs: URL) sources; the security archive is not a release mirror
    MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -nE 's/^deb +(\[[^]]*\] +)?([^ ]+) +'"$SUITE"' .*/\2/p; s/^URIs: *([^ ]+).*/\1/p' \
        | grep -v -- '-security' | grep -m1 -i debian || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/bdrc-base.XXXXXX")
trap 'rm -rf -- "$ROOTFS"' EXIT
echo "base-image: debootstrap --variant=minbase $SUITE from $MIRROR"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
    || { tail -n 20 -- "$ROOTFS.log" >&2; rm -f -- "$ROOTFS.log"; exit 1; }
rm -f -- "$ROOTFS.log"
# what an image does not need: downloaded package files and lists, documentation, logs of the bootstrap
rm -rf -- "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*
tar -C "$ROOTFS" --numeric-owner -c . \
    | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$TAG" >/dev/null
echo "base-image: $TAG ($(docker image inspect --format '{{.Size}}' "$TAG") bytes)"
