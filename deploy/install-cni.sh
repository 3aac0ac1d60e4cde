#!/bin/sh
# Installs the packaged flatnet CNI plugin (scripts/package-cni.sh) into a CNI bin dir. The
# flatnet DaemonSet's init container runs it with the host's /opt/cni/bin mounted:
#
#   install-cni.sh /host/opt/cni/bin            install or upgrade; a no-op when up to date
#   install-cni.sh --uninstall /host/opt/cni/bin
#
# What it touches in DEST: `flatnet` (the launcher) and `flatnet.d/` — never another plugin.
# A runtime may exec DEST/flatnet at any moment, so nothing is ever written in place:
#   1. the payload is copied to a temp dir in flatnet.d/, fsynced, renamed to flatnet.d/<id>
#      (content-addressed; an existing flatnet.d/<id> is compared with the package and kept
#      when equal, so a reinstall rewrites nothing);
#   2. the new launcher is written to a temp name in DEST, fsynced, asked VERSION (an artifact
#      that does not run on this node is never put in place), then renamed over DEST/flatnet;
#   3. payloads other than the new one and the one the replaced launcher used are removed (a
#      plugin started a moment ago by the old launcher still finds its payload).
# Needs a POSIX shell, GNU coreutils (mv -T, sync FILE) and diffutils; the flatnet image has them.
set -eu
umask 022

fail() {
  echo "install-cni: $*" >&2
  exit 1
}

uninstall=0
if [ "${1:-}" = "--uninstall" ]; then
  uninstall=1
  shift
fi
[ $# -eq 1 ] || fail "usage: install-cni.sh [--uninstall] DEST_CNI_BIN_DIR"
dest=${1%/}
[ -n "$dest" ] || dest=/

pkg=$(cd "$(dirname "$0")" && pwd -P)
launcher=$dest/flatnet
marker=flatnet-cni-launcher

# The payload a launcher of ours runs, or nothing.
payload_of() {
  if [ -f "$1" ] && grep -q "$marker" "$1"; then
    # shellcheck disable=SC2016 # the launcher's literal text `p=$dir/…`
    sed -n 's|^p=\$dir/flatnet\.d/||p' "$1"
  fi
}

if [ "$uninstall" = 1 ]; then
  if [ -f "$launcher" ] && grep -q "$marker" "$launcher"; then
    rm -f "$launcher"
    echo "install-cni: removed $launcher"
  elif [ -e "$launcher" ] || [ -L "$launcher" ]; then
    echo "install-cni: left $launcher in place: it is not a launcher installed by install-cni.sh" >&2
  fi
  rm -rf "$dest/flatnet.d"
  echo "install-cni: removed $dest/flatnet.d"
  exit 0
fi

[ -f "$pkg/flatnet" ] || fail "$pkg/flatnet is missing: is $pkg a package made by scripts/package-cni.sh?"
id=$(payload_of "$pkg/flatnet")
if [ -z "$id" ] || [ ! -x "$pkg/flatnet.d/$id/runtime/node" ]; then
  fail "$pkg is not a complete flatnet CNI package (no payload flatnet.d/$id)"
fi

mkdir -p "$dest/flatnet.d" || fail "create $dest/flatnet.d failed"
previous=$(payload_of "$launcher")

# 1. the payload
fresh=0
if [ -d "$dest/flatnet.d/$id" ] && diff -rq "$pkg/flatnet.d/$id" "$dest/flatnet.d/$id" >/dev/null 2>&1; then
  echo "install-cni: payload $id already in $dest/flatnet.d"
else
  tmp=$(mktemp -d "$dest/flatnet.d/.$id.tmp.XXXXXX") || fail "create a temp dir in $dest/flatnet.d failed"
  trap 'rm -rf "$tmp"' EXIT
  chmod 0755 "$tmp"
  cp -Rp "$pkg/flatnet.d/$id/." "$tmp/" || fail "copy the payload to $tmp failed"
  find "$tmp" -exec sync -- {} + || fail "fsync the payload in $tmp failed"
  if [ -d "$dest/flatnet.d/$id" ]; then
    # Same id, different bytes: damaged on this node. Swap it out (a plugin starting in the
    # instant between the two renames gets a "payload missing" CNI error and is retried).
    echo "install-cni: payload $id in $dest/flatnet.d differs from the package; replacing it" >&2
    mv -T "$dest/flatnet.d/$id" "$tmp.damaged" || fail "move the damaged payload $dest/flatnet.d/$id aside failed"
  fi
  if ! mv -T "$tmp" "$dest/flatnet.d/$id" 2>/dev/null; then
    # Another installer renamed the same content into place first: equally good.
    [ -d "$dest/flatnet.d/$id" ] || fail "rename $tmp to $dest/flatnet.d/$id failed"
    rm -rf "$tmp"
  fi
  rm -rf "$tmp.damaged"
  trap - EXIT
  sync -- "$dest/flatnet.d"
  fresh=1
  echo "install-cni: payload $id installed in $dest/flatnet.d"
fi

# 2. the launcher, asked VERSION whenever anything changed
if [ "$fresh" = 0 ] && [ -f "$launcher" ] && [ ! -L "$launcher" ] && cmp -s "$pkg/flatnet" "$launcher"; then
  echo "install-cni: $launcher is up to date (payload $id)"
else
  tmp=$(mktemp "$dest/.flatnet.tmp.XXXXXX") || fail "create a temp file in $dest failed"
  trap 'rm -f "$tmp"' EXIT
  { cp "$pkg/flatnet" "$tmp" && chmod 0755 "$tmp" && sync -- "$tmp"; } || fail "write $tmp failed"
  # A payload this run installed and that does not run must not stay: its id would pass for
  # installed on the next run.
  refuse() {
    [ "$fresh" = 0 ] || rm -rf "${dest:?}/flatnet.d/$id"
    fail "$1; $launcher left as it was"
  }
  answer=$(CNI_COMMAND=VERSION "$tmp" </dev/null 2>&1) || refuse "the new plugin does not run on this node (VERSION: $answer)"
  case $answer in
    *'"supportedVersions"'*) ;;
    *) refuse "the new plugin answered VERSION with $answer" ;;
  esac
  if [ -f "$launcher" ] && [ ! -L "$launcher" ] && cmp -s "$tmp" "$launcher"; then
    rm -f "$tmp"
    echo "install-cni: $launcher is up to date (payload $id repaired)"
  else
    mv -f "$tmp" "$launcher" || fail "rename $tmp to $launcher failed"
    sync -- "$dest"
    echo "install-cni: installed $launcher (payload $id${previous:+, replacing $previous})"
  fi
  trap - EXIT
fi

# 3. old payloads and leftovers of an installer that died (older than 10 minutes, so a
#    concurrent installer's temp files are left alone)
for d in "$dest"/flatnet.d/*; do
  name=${d##*/}
  case $name in
    "$id" | "$previous") continue ;;
    *[!0-9a-f]*) continue ;; # not a payload of ours
    ????????????????) rm -rf "$d" && echo "install-cni: removed old payload $name" ;;
  esac
done
find "$dest/flatnet.d" -maxdepth 1 -name '.*.tmp.*' -mmin +10 -exec rm -rf {} + 2>/dev/null || true
find "$dest" -maxdepth 1 -name '.flatnet.tmp.*' -mmin +10 -exec rm -f {} + 2>/dev/null || true
