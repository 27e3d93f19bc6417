#!/bin/sh
# Debian packages a k8py node needs for the cri runtime and its tests: containerd, runc, the CNI
# plugins, busybox-static (the offline test image), iptables (the CNI bridge's masquerading) and
# nftables/iproute2, and etcd (the datastore of `k8py init` and HA control planes). Installs only what
# is missing; needs root (without it: says so, installs nothing).
set -eu
need=""
command -v containerd >/dev/null 2>&1 || need="$need containerd"
command -v runc >/dev/null 2>&1 || need="$need runc"
[ -x /usr/lib/cni/bridge ] || need="$need containernetworking-plugins"
[ -x /bin/busybox ] || need="$need busybox-static"
command -v iptables >/dev/null 2>&1 || need="$need iptables"
command -v nft >/dev/null 2>&1 || need="$need nftables"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v cc >/dev/null 2>&1 || need="$need gcc libc6-dev"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v etcdctl >/dev/null 2>&1 || need="$need etcd-client"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-node-deps: not root; the cri runtime's tests will be skipped (missing:$need)" >&2
    exit 0
fi
echo "install-node-deps: installing$need" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
