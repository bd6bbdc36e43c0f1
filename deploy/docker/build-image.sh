#!/usr/bin/env bash
# Builds a container image of a `dynamo` binary with no base image, so no registry is needed:
# the image holds the binary, the shared libraries and loader `ldd` names, a hosts/DNS
# lookup order, and empty /data, /certs and /tmp. `cargo xtask image` runs it on the release
# binary; the compose test runs it on the debug one.
#
# usage: deploy/docker/build-image.sh BINARY [TAG]   (TAG: dynamo:latest)
set -euo pipefail
binary=${1:?usage: build-image.sh BINARY [TAG]}
tag=${2:-dynamo:latest}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
mkdir -p "$root/usr/local/bin" "$root/data" "$root/certs" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp "$binary" "$root/usr/local/bin/dynamo"
# The C library, libm, libgcc_s and the dynamic loader, at the paths the binary asks for.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
# Container names resolve through the hosts file Docker mounts and its DNS server.
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
cat > "$context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
ENV DYNAMO_DATA_DIR=/data DYNAMO_CERTS_DIR=/certs DYNAMO_LISTEN=0.0.0.0:7000
EXPOSE 7000/udp
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/dynamo"]
CMD ["--help"]
DOCKERFILE
docker build --quiet --tag "$tag" "$context"
