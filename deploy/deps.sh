#!/bin/bash
# Debian 12 packages to build, run and test crisp.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PKGS=(build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libspdlog-dev nlohmann-json3-dev libyaml-cpp-dev libgtest-dev libgmock-dev
  libnl-3-dev libnl-route-3-dev libssl-dev ca-certificates zlib1g-dev libzstd-dev libisal-dev libseccomp-dev
  containernetworking-plugins iproute2 iptables util-linux procps busybox-static docker-registry skopeo apache2-utils zstd curl)
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
