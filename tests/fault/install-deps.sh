#!/usr/bin/env bash
# Installs the host tools the fault tests run inside the nodes' network
# namespaces (the node image is FROM scratch and has none): iptables for
# partitions, tc (iproute2) for netem delay and loss, nsenter (util-linux)
# to enter a container's namespace by its PID. Debian packages, through
# apt-get, only for what is missing. Needs root, as the tests do.
set -euo pipefail

missing=()
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "fault: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
