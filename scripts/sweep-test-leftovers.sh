#!/usr/bin/env bash
# Removes what interrupted test runs left behind: network namespaces and temp directories named
# `fnt-<tag>-<hex>…` (e2e/helpers/prefix.ts), the private containerd and shims started under such
# a directory, their container cgroups, mounts and (CRI) cached CNI results.
#
# Only objects with an owner record (/run/fnt-owners/<prefix>, written by uniquePrefix before
# anything is created) whose owner process is dead are touched. Anything else named fnt-* — made
# without the helpers, or by a run still in flight — is left alone, so this is safe to run while
# other test runs are active on the machine. Run as root. Prints one line per thing removed.
set -euo pipefail

owners=/run/fnt-owners
tmp=${TMPDIR:-/tmp}

# fnt-<tag>-<hex> of a name, or nothing when the name does not follow the convention.
prefix_of() {
  if [[ $1 =~ ^(fnt-[a-z0-9]+-[0-9a-f]{6}) ]]; then echo "${BASH_REMATCH[1]}"; fi
}

owner_alive() {
  local file="$owners/$1" pid
  [[ -n $1 && -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]]
}

# Stale = has an owner record, and its owner is gone. No record: not ours to judge.
stale() {
  local prefix
  prefix=$(prefix_of "$1")
  [[ -n $prefix && -f $owners/$prefix ]] && ! owner_alive "$prefix"
}

if command -v ip >/dev/null; then
  for ns in $(ip netns list | awk '$1 ~ /^fnt-/ { print $1 }'); do
    stale "$ns" || continue
    # Processes inside keep the namespace (and its veths) alive; they were started by the dead run.
    for pid in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" && echo "sweep: removed network namespace $ns"
  done
fi

# A namespace's /etc/netns/<name> (its resolv.conf for `ip netns exec`), made by a dead test run.
for dir in /etc/netns/fnt-*; do
  [[ -d $dir ]] || continue
  stale "$(basename "$dir")" || continue
  rm -rf "$dir" && echo "sweep: removed $dir"
done

for dir in "$tmp"/fnt-*; do
  [[ -d $dir ]] || continue
  name=$(basename "$dir")
  stale "$name" || continue
  prefix=$(prefix_of "$name")
  # A private containerd and its shims name this directory in their arguments (--config,
  # -address); match the exact path, then end them by pid.
  for cmdline in /proc/[0-9]*/cmdline; do
    pid=${cmdline#/proc/}
    pid=${pid%/cmdline}
    args=$(tr '\0' ' ' 2>/dev/null <"$cmdline" || true)
    if [[ $args == *"$dir/"* ]]; then
      kill -KILL "$pid" 2>/dev/null && echo "sweep: ended process $pid (${args:0:100})" || true
    fi
  done
  # Containers of that containerd: its namespace is the prefix, and runc puts a container in the
  # cgroup /<namespace>/<id> of every hierarchy (one on cgroup v2, one per controller on v1).
  if [[ -n $prefix ]]; then
    for cg in /sys/fs/cgroup/"$prefix" /sys/fs/cgroup/*/"$prefix"; do
      [[ -d $cg ]] || continue
      while read -r procs; do
        for pid in $(<"$procs"); do kill -KILL "$pid" 2>/dev/null || true; done
      done < <(find "$cg" -name cgroup.procs)
      sleep 0.2
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $cg ]] || echo "sweep: removed cgroup $cg"
    done
  fi
  # A private containerd with CRI: libcni caches each pod's CNI results in /var/lib/cni/results as
  # <network>-<sandbox id>-<ifname> until the pod's DEL, which a killed run never sent.
  for sandbox in "$dir"/root/io.containerd.grpc.v1.cri/sandboxes/*; do
    [[ -d $sandbox ]] || continue
    id=$(basename "$sandbox")
    for cached in /var/lib/cni/results/*-"$id"-*; do
      [[ -f $cached ]] && rm -f "$cached" && echo "sweep: removed $cached"
    done
  done
  # Anything still mounted below the directory (deepest first), among them the CRI plugin's pod
  # network namespaces, shm and overlay root filesystems, would make rm fail.
  awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$dir" && echo "sweep: removed $dir"
done

if [[ -d $owners ]]; then
  for file in "$owners"/fnt-*; do
    [[ -f $file ]] || continue
    owner_alive "$(basename "$file")" || rm -f "$file"
  done
fi

# Labs made by test suites (lab/testing/testLabs.ts) record their test's pid in
# /run/flatnet-lab-owners/<lab>; a lab whose test process is dead is removed by the lab's own
# `lab down`, which finds everything of it by name (namespaces, daemons, its directory).
lab_owners=/run/flatnet-lab-owners
flatnetctl="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/dist/bin/flatnetctl"
if [[ -d $lab_owners ]]; then
  for file in "$lab_owners"/*; do
    [[ -f $file ]] || continue
    lab=$(basename "$file")
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] && continue
    if [[ -x $flatnetctl ]] && "$flatnetctl" lab down --name "$lab" >/dev/null 2>&1; then
      echo "sweep: removed test lab $lab"
      rm -f "$file"
    elif [[ ! -x $flatnetctl ]]; then
      # Not built yet (a fresh clone): namespaces by name, then the lab's directory.
      for ns in $(ip netns list 2>/dev/null | awk -v p="fnlab-$lab-" 'index($1, p) == 1 { print $1 }'); do
        for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$ns" && echo "sweep: removed network namespace $ns"
      done
      rm -rf "/run/flatnet-lab/$lab" /etc/netns/"fnlab-$lab-"* && rm -f "$file"
    fi
  done
fi
