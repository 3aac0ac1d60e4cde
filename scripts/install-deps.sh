#!/usr/bin/env bash
# Installs the Debian packages the tests, the lab and the benchmarks need. Idempotent: when every
# package is already installed it does not touch apt at all (CI runs this on every build).
# Run as root. Talks only to Debian's package mirrors configured on the host.
set -euo pipefail

# package -> why we need it (keep this list in step with the README)
packages=(
  iproute2                     # ip netns / link / addr / route: test setup and observation
  nftables                     # daemon masquerade rules
  iptables                     # portmap chaining, conntrack checks
  containerd                   # e2e/runtime: a real runtime calling CNI (ctr run --cni; CRI plugin)
  runc                         # containerd's OCI runtime (crun fails on this kernel's cgroups)
  containernetworking-plugins  # reference ptp + host-local (peer tests, bench), portmap
  busybox-static               # offline container image for e2e/runtime
  etcd-server                  # etcd datastore tests
  iputils-ping                 # ping: reachability checks from the host and inside namespaces
  iperf3                       # lab throughput
  hyperfine                    # command benchmarks
  procps                       # ps, sysctl
  tcpdump                      # lab debugging
  time                         # /usr/bin/time -f %M: peak RSS of one plugin call (bench)
  shellcheck                   # e2e/kind: the kind script is checked, since it cannot run here
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  # "install ok installed" is the only state in which the package's files are really there.
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#packages[@]} Debian packages already installed"
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps out docker-ish extras; the listed packages are all we use.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for p in "${missing[@]}"; do
  dpkg-query -W -f='install-deps.sh: installed ${Package} ${Version}\n' "$p"
done
