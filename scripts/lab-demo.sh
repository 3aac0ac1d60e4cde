#!/usr/bin/env bash
# The newcomer's first command: install what the lab needs, build flatnet, start a cluster of
# network namespaces on this machine (3 nodes × 2 pods, a real flatnetd per node, pods wired by
# the real plugin), prove the Kubernetes network model on it, and remove it again.
# Run as root. Nothing leaves this machine: the lab's addresses live in its own namespaces.
#
#   scripts/lab-demo.sh                       # 3 nodes × 2 pods on the file datastore, IPv4
#   IP_FAMILY=dual scripts/lab-demo.sh        # dual-stack (or ipv6): every requirement proven per family
#   NODES=4 PODS_PER_NODE=3 DATASTORE=etcd scripts/lab-demo.sh
#   KEEP=1 scripts/lab-demo.sh                # leave the lab up to explore (flatnetctl lab status --name demo)
set -euo pipefail
cd "$(dirname "$0")/.."

name=${LAB_NAME:-demo}
nodes=${NODES:-3}
pods=${PODS_PER_NODE:-2}
datastore=${DATASTORE:-file}
family=${IP_FAMILY:-ipv4}
ctl=dist/bin/flatnetctl

step() { printf '\n== %s\n' "$*"; }

step "installing the Debian packages the lab uses, building flatnet"
./scripts/install-deps.sh
./build.sh

# A demo interrupted earlier may have left its lab behind; start from nothing.
"$ctl" lab down --name "$name" >/dev/null
if [[ -z ${KEEP:-} ]]; then
  trap 'step "$ctl lab down --name $name: removing the lab"; "$ctl" lab down --name "$name"; echo "(KEEP=1 $0 leaves the lab up to explore)"' EXIT
fi

step "$ctl lab up --name $name --nodes $nodes --pods-per-node $pods --datastore $datastore --ip-family $family: a cluster of network namespaces on this machine"
"$ctl" lab up --name "$name" --nodes "$nodes" --pods-per-node "$pods" --datastore "$datastore" --ip-family "$family"
step "$ctl lab check --name $name: the Kubernetes network model, with real connections between the pods and nodes"
"$ctl" lab check --name "$name"
if [[ -n ${KEEP:-} ]]; then
  echo
  echo "lab $name is still up. Look around:"
  echo "  $ctl lab status --name $name"
  echo "  ip netns exec fnlab-$name-node1 ip route        # node1's routes to its peers' pod subnets"
  echo "  ip netns exec fnlab-$name-pod1a ip addr show eth0"
  echo "  tail /run/flatnet-lab/$name/nodes/node1/flatnetd.log"
  echo "Remove it with: $ctl lab down --name $name"
fi
