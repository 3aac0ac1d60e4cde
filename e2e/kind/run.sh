#!/usr/bin/env bash
# flatnet on a real Kubernetes cluster: kind, three nodes (one control plane, two workers), no
# default CNI. Builds the image (deploy/Dockerfile), creates the cluster (kind-config.yaml), loads
# the image, applies deploy/flatnet.yaml, waits for every node Ready and CoreDNS Ready, then proves
# the network model with real pods on every node (e2e/kind/netcheck.yaml + probe.cjs):
#   pod → pod on the same node and across nodes, the source address preserved (what the server saw
#   is the client pod's IP), node → pod (from a hostNetwork pod), pod → node, and each pod's own IP
#   (from its node's podCIDR). With E2E_TEST=/path/to/e2e.test it then runs the sig-network
#   conformance tests "Networking Granular Checks: Pods". The cluster is deleted on exit.
#
# Usage: e2e/kind/run.sh            (from anywhere; needs docker with a running daemon, kind, kubectl)
# Environment:
#   IP_FAMILY=ipv4        ipv4 (kind-config.yaml) or dual (kind-config-dual.yaml: IPv4 and IPv6);
#                         flatnet's cluster and service ranges are taken from that kind config
#   CLUSTER=flatnet-e2e   kind cluster name (refused if it already exists: never deletes yours)
#   E2E_TEST=             path of a Kubernetes e2e.test binary of the cluster's version (optional)
#   KEEP_CLUSTER=0        1: keep the cluster (and its kubeconfig) for inspection
#   TIMEOUT=300s          per wait (rollouts, Ready)
# Exit: 0 all checks passed; 1 a step or a check failed; 2 prerequisites missing (nothing created).
set -euo pipefail

CLUSTER=${CLUSTER:-flatnet-e2e}
IP_FAMILY=${IP_FAMILY:-ipv4}
E2E_TEST=${E2E_TEST:-}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
TIMEOUT=${TIMEOUT:-300s}
CHECK_NS=flatnet-e2e
# The probe ports of e2e/kind/netcheck.yaml: pods serve on POD_PORT, hostNetwork pods on NODE_PORT.
POD_PORT=8080
NODE_PORT=18080

usage() {
  local line
  while IFS= read -r line; do
    [[ $line == '#!'* ]] && continue
    [[ $line == '#'* ]] || break
    line=${line#'#'}
    echo "${line# }"
  done <"${BASH_SOURCE[0]}"
}

# Only shell builtins until every prerequisite is known to be there: on a machine without them this
# must say what is missing, not fail on the first command it happens to lack.
check_prerequisites() {
  local problems=() out
  command -v docker >/dev/null 2>&1 || problems+=("docker: not found on PATH (https://docs.docker.com/engine/install/)")
  command -v kind >/dev/null 2>&1 || problems+=("kind: not found on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
  command -v kubectl >/dev/null 2>&1 || problems+=("kubectl: not found on PATH (https://kubernetes.io/docs/tasks/tools/)")
  if command -v docker >/dev/null 2>&1 && ! out=$(docker info 2>&1); then
    problems+=("docker: the daemon is not reachable (docker info: ${out##*$'\n'})")
  fi
  if [[ $IP_FAMILY != ipv4 && $IP_FAMILY != dual ]]; then
    problems+=("IP_FAMILY=$IP_FAMILY: expected ipv4 or dual")
  fi
  if [[ -n $E2E_TEST && ! ( -f $E2E_TEST && -x $E2E_TEST ) ]]; then
    problems+=("E2E_TEST=$E2E_TEST: not an executable file (a Kubernetes e2e.test binary)")
  fi
  if ((${#problems[@]})); then
    echo "kind e2e: cannot run here; prerequisites missing:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    echo "Nothing was created." >&2
    exit 2
  fi
}

step() { echo "==> $*"; }

# The kind config of an IP family (relative to the repository root).
kind_config() {
  if [[ $1 == dual ]]; then echo e2e/kind/kind-config-dual.yaml; else echo e2e/kind/kind-config.yaml; fi
}

# The value of a `key: value` line of a kind config (podSubnet, serviceSubnet); empty if absent.
kind_value() {
  local line
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*$2:[[:space:]]*\"?([^\"[:space:]]+) ]]; then
      echo "${BASH_REMATCH[1]}"
      return
    fi
  done <"$1"
}

# deploy/flatnet.yaml for the cluster a kind config creates: FLATNETD_CLUSTER_CIDR and
# FLATNETD_SERVICE_CIDR set to its podSubnet and serviceSubnet (the kind config is the one place
# the ranges are written; kind's defaults where it sets none). Printed on stdout.
cluster_manifest() {
  local pods services line pending=""
  pods=$(kind_value "$1" podSubnet)
  services=$(kind_value "$1" serviceSubnet)
  pods=${pods:-10.244.0.0/16}
  services=${services:-10.96.0.0/16}
  while IFS= read -r line; do
    if [[ -n $pending && $line =~ ^([[:space:]]*value:[[:space:]]*) ]]; then
      echo "${BASH_REMATCH[1]}$pending"
      pending=""
      continue
    fi
    [[ $line =~ name:[[:space:]]*FLATNETD_CLUSTER_CIDR$ ]] && pending=$pods
    [[ $line =~ name:[[:space:]]*FLATNETD_SERVICE_CIDR$ ]] && pending=$services
    echo "$line"
  done <deploy/flatnet.yaml
}
fail() {
  echo "kind e2e: FAIL: $*" >&2
  exit 1
}

created=0
work=""
cleanup() {
  local status=$?
  trap - EXIT
  if ((created)); then
    if ((status != 0)); then diagnostics || true; fi
    if [[ $KEEP_CLUSTER == 1 ]]; then
      echo "keeping cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG; delete with: kind delete cluster --name $CLUSTER"
    else
      step "delete cluster $CLUSTER"
      kind delete cluster --name "$CLUSTER" || echo "kind e2e: deleting cluster $CLUSTER failed; delete it with: kind delete cluster --name $CLUSTER" >&2
    fi
  fi
  if [[ -n $work ]]; then
    if [[ $KEEP_CLUSTER == 1 || $status != 0 ]]; then echo "kept $work (kubeconfig, conformance report)" >&2; else rm -rf "$work"; fi
  fi
  exit "$status"
}

diagnostics() {
  echo "---- diagnostics" >&2
  kubectl get nodes -o wide >&2 || true
  kubectl get pods -A -o wide >&2 || true
  local p
  for p in $(kubectl -n flatnet get pods -o name 2>/dev/null); do
    kubectl -n flatnet logs "$p" --all-containers --prefix --tail=40 >&2 || true
  done
}

# The nodes' own view: the installed plugin runs without Node.js (there is none on a kind node),
# the conflist chains portmap in a version that portmap speaks (flatnetd asked it), and every
# peer has a route.
check_nodes() {
  local n out nodes
  mapfile -t nodes < <(kind get nodes --name "$CLUSTER")
  for n in "${nodes[@]}"; do
    if docker exec "$n" sh -c 'command -v node' >/dev/null 2>&1; then fail "$n has a node binary; the self-contained plugin would not be proven"; fi
    out=$(docker exec "$n" sh -c 'CNI_COMMAND=VERSION /opt/cni/bin/flatnet </dev/null' 2>&1) || fail "$n: /opt/cni/bin/flatnet VERSION failed: $out"
    [[ $out == *'"1.1.0"'* ]] || fail "$n: /opt/cni/bin/flatnet VERSION answered $out"
    local listVersion portmapVersions
    listVersion=$(docker exec "$n" sh -c 'cat /etc/cni/net.d/10-flatnet.conflist' | grep -o '"cniVersion": *"[0-9.]*"' | head -1 | grep -o '[0-9][0-9.]*') || fail "$n: no cniVersion in /etc/cni/net.d/10-flatnet.conflist"
    portmapVersions=$(docker exec "$n" sh -c 'CNI_COMMAND=VERSION /opt/cni/bin/portmap </dev/null' 2>&1) || true
    [[ $portmapVersions == *"\"$listVersion\""* ]] || fail "$n: the conflist's cniVersion $listVersion is not one the node's portmap speaks ($portmapVersions)"
    local routes=0 line family families=(-4)
    [[ $IP_FAMILY == dual ]] && families=(-4 -6)
    for family in "${families[@]}"; do
      out=$(docker exec "$n" ip "$family" route show proto 200)
      local count=0
      while IFS= read -r line; do [[ -n $line ]] && count=$((count + 1)); done <<<"$out"
      ((count == ${#nodes[@]} - 1)) || fail "$n: expected $((${#nodes[@]} - 1)) IPv${family#-} routes to peers (proto 200), found: ${out:-none}"
      routes=$((routes + count))
    done
    echo "    $n: plugin runs without Node.js, conflist $listVersion (portmap speaks it), $routes peer routes"
  done
}

ipv4_int() {
  local IFS=. a b c d
  read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}
in_cidr() {
  local ip net len
  ip=$(ipv4_int "$1")
  net=$(ipv4_int "${2%/*}")
  len=${2#*/}
  (((ip >> (32 - len)) == (net >> (32 - len))))
}

declare -A passed=() total=()
failures=()
result() {
  local id=$1 ok=$2 detail=$3
  total[$id]=$((${total[$id]:-0} + 1))
  if ((ok)); then passed[$id]=$((${passed[$id]:-0} + 1)); else failures+=("$id: $detail"); fi
}
probe() {
  kubectl -n "$CHECK_NS" exec "$1" -- node /probe/probe.cjs "${@:2}" 2>&1 || true
}

network_checks() {
  local name node ip cidr a b id out seen local_ addr
  declare -A pod_node=() pod_ip=() node_ip=() node_cidr=() host_pod=()
  while read -r name ip cidr; do node_ip[$name]=$ip; node_cidr[$name]=$cidr; done < <(
    kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.addresses[?(@.type=="InternalIP")].address} {.spec.podCIDR}{"\n"}{end}')
  while read -r name node ip; do pod_node[$name]=$node; pod_ip[$name]=$ip; done < <(
    kubectl -n "$CHECK_NS" get pods -l app=netcheck -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}')
  while read -r name node; do host_pod[$node]=$name; done < <(
    kubectl -n "$CHECK_NS" get pods -l app=netcheck-host -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName}{"\n"}{end}')
  ((${#pod_ip[@]} == 2 * ${#node_ip[@]})) || fail "expected 2 check pods per node, found ${#pod_ip[@]} for ${#node_ip[@]} nodes"
  ((${#host_pod[@]} == ${#node_ip[@]})) || fail "expected one hostNetwork check pod per node, found ${#host_pod[@]}"

  for a in "${!pod_ip[@]}"; do
    out=$(probe "$a" self)
    addr=${out#ip=}
    if [[ $out == "ip=${pod_ip[$a]}" ]] && in_cidr "$addr" "${node_cidr[${pod_node[$a]}]}"; then result own-ip 1 ""
    else result own-ip 0 "$a on ${pod_node[$a]}: eth0 says '$out', the API says ${pod_ip[$a]}, node podCIDR ${node_cidr[${pod_node[$a]}]}"; fi
  done
  for a in "${!pod_ip[@]}"; do
    for b in "${!pod_ip[@]}"; do
      [[ $a == "$b" ]] && continue
      id=pod-pod-across-nodes
      [[ ${pod_node[$a]} == "${pod_node[$b]}" ]] && id=pod-pod-same-node
      out=$(probe "$a" connect "${pod_ip[$b]}" "$POD_PORT")
      if [[ $out =~ ^seen=([0-9.]+)\ local=([0-9.]+)$ ]]; then
        seen=${BASH_REMATCH[1]} local_=${BASH_REMATCH[2]}
        result "$id" 1 ""
        if [[ $seen == "${pod_ip[$a]}" && $local_ == "${pod_ip[$a]}" ]]; then result source-preserved 1 ""
        else result source-preserved 0 "$a (${pod_ip[$a]}) → $b: the server saw $seen, the client used $local_"; fi
      else
        result "$id" 0 "$a (${pod_node[$a]}) → $b ${pod_ip[$b]}:$POD_PORT (${pod_node[$b]}): $out"
      fi
    done
  done
  for node in "${!host_pod[@]}"; do
    for b in "${!pod_ip[@]}"; do
      out=$(probe "${host_pod[$node]}" connect "${pod_ip[$b]}" "$POD_PORT")
      if [[ $out == seen=* ]]; then result node-pod 1 ""; else result node-pod 0 "$node → $b ${pod_ip[$b]} (${pod_node[$b]}): $out"; fi
    done
  done
  for a in "${!pod_ip[@]}"; do
    for node in "${!node_ip[@]}"; do
      out=$(probe "$a" connect "${node_ip[$node]}" "$NODE_PORT")
      if [[ $out == seen=* ]]; then result pod-node 1 ""; else result pod-node 0 "$a (${pod_node[$a]}) → node $node ${node_ip[$node]}:$NODE_PORT: $out"; fi
    done
  done

  local ok=1 row title
  for row in "pod-pod-same-node|pod → pod on the same node" "pod-pod-across-nodes|pod → pod across nodes" \
    "source-preserved|source address preserved pod → pod (no NAT)" "node-pod|node → pod" "pod-node|pod → node" \
    "own-ip|pod sees its own IP, from its node's podCIDR"; do
    id=${row%%|*} title=${row#*|}
    local p=${passed[$id]:-0} n=${total[$id]:-0}
    if ((n > 0 && p == n)); then printf '    PASS  %-46s %s/%s\n' "$title" "$p" "$n"
    else printf '    FAIL  %-46s %s/%s\n' "$title" "$p" "$n"; ok=0; fi
  done
  if ((${#failures[@]})); then printf '      %s\n' "${failures[@]}"; fi
  ((ok)) || fail "network model checks failed"
}

main() {
  if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage
    exit 0
  fi
  (($# == 0)) || { echo "kind e2e: no arguments expected (see --help)" >&2; exit 2; }
  check_prerequisites

  local root image
  root=$(cd "${BASH_SOURCE[0]%/*}/../.." && pwd)
  cd "$root"
  local line clusters
  image=""
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*image:[[:space:]]*([^[:space:]]+) ]]; then image=${BASH_REMATCH[1]}; break; fi
  done <deploy/flatnet.yaml
  [[ -n $image ]] || fail "no image: in deploy/flatnet.yaml"
  # Read in full first (no early-closing pipe): the cleanup deletes the cluster of this name, so it
  # must never be one that existed before.
  clusters=$(kind get clusters 2>/dev/null) || fail "kind get clusters failed"
  if [[ $'\n'$clusters$'\n' == *$'\n'"$CLUSTER"$'\n'* ]]; then
    echo "kind e2e: a kind cluster named $CLUSTER exists already; delete it or set CLUSTER=another-name" >&2
    exit 2
  fi
  work=$(mktemp -d)
  export KUBECONFIG="$work/kubeconfig"
  trap cleanup EXIT

  step "build image $image (deploy/Dockerfile)"
  DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t "$image" .
  local config
  config=$(kind_config "$IP_FAMILY")
  step "create kind cluster $CLUSTER ($config)"
  created=1
  kind create cluster --name "$CLUSTER" --config "$config" --kubeconfig "$KUBECONFIG"
  step "load $image into the nodes"
  kind load docker-image "$image" --name "$CLUSTER"
  step "apply deploy/flatnet.yaml (cluster ranges of $config)"
  cluster_manifest "$config" | kubectl apply -f -
  kubectl -n flatnet rollout status daemonset/flatnet --timeout="$TIMEOUT"
  step "wait for every node Ready, and NetworkUnavailable=False"
  kubectl wait --for=condition=Ready nodes --all --timeout="$TIMEOUT"
  local name cond
  while read -r name cond; do
    [[ $cond == False ]] || fail "node $name: NetworkUnavailable is '${cond:-unset}', flatnetd sets it False once its routes are in place"
  done < <(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="NetworkUnavailable")].status}{"\n"}{end}')
  step "wait for CoreDNS Ready"
  kubectl -n kube-system rollout status deployment/coredns --timeout="$TIMEOUT"
  kubectl -n kube-system wait --for=condition=Ready pods -l k8s-app=kube-dns --timeout="$TIMEOUT"
  step "check the nodes"
  check_nodes

  step "network model checks (e2e/kind/netcheck.yaml)"
  kubectl apply -f e2e/kind/netcheck.yaml
  kubectl -n "$CHECK_NS" create configmap netcheck-probe --from-file=probe.cjs=e2e/kind/probe.cjs --dry-run=client -o yaml | kubectl apply -f -
  local ds
  for ds in netcheck-a netcheck-b netcheck-host; do kubectl -n "$CHECK_NS" rollout status "daemonset/$ds" --timeout="$TIMEOUT"; done
  network_checks

  if [[ -n $E2E_TEST ]]; then
    step "conformance: Networking Granular Checks: Pods ($E2E_TEST)"
    "$E2E_TEST" --kubeconfig="$KUBECONFIG" --provider=skeleton --report-dir="$work/e2e-report" \
      --ginkgo.focus='Networking Granular Checks: Pods' --ginkgo.skip='\[Feature:' ||
      fail "conformance tests failed (report in $work/e2e-report; KEEP_CLUSTER=1 keeps it)"
  else
    step "conformance: skipped (set E2E_TEST=/path/to/e2e.test of the cluster's Kubernetes version)"
  fi
  echo "kind e2e: PASS"
}

# Sourced (by its test, for the helpers above), it only defines functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
