#!/usr/bin/env bash
# Packages the flatnet CNI plugin for nodes that have no Node.js (kind's node image has none):
# the native CNI entry (dist/bin/flatnet, static: it forwards calls to flatnetd), and for when no
# flatnetd answers the Node plugin (dist/bin/flatnet-node + its dist/lib natives) together with
# the Node.js runtime that runs it, that runtime's shared libraries and the dynamic loader, and a
# /bin/sh launcher.
#
#   dist/cni/
#     flatnet                    the launcher, installed as <cni bin dir>/flatnet
#     flatnet.d/<id>/            the payload; <id> = digest of its content
#       bin/flatnet              the native entry
#       bin/flatnet-node         runs the shipped node on bin/flatnet-node.js (the entry's fallback)
#       bin/flatnet-node.js  lib/*.node  package.json      the Node plugin bundle, laid out as in dist/
#       runtime/node  runtime/ld-linux-*.so.*  runtime/lib/*.so.*
#     install-cni.sh             the installer the init container runs (deploy/install-cni.sh)
#
# Why ship glibc, libstdc++ and libgcc_s too, and start node through the shipped loader
# (`ld.so --library-path`): the plugin then depends on nothing of the node's userland but
# /bin/sh — not on Node.js, not on the host's glibc being at least as new as the one node was
# built against, not on libstdc++ being installed at all (a Debian host without apt has none;
# Alpine or Flatcar hosts have no glibc). The loader's --library-path is not inherited by
# children, so anything the plugin spawns uses the host's own libraries.
#
# Usage: scripts/package-cni.sh [--dist DIR] [--node PATH] [--out DIR]
#   --dist  the build output to package (default: dist, after ./build.sh)
#   --node  the Node.js binary to ship (default: `node` on PATH; >= 20.19)
#   --out   where the package goes (default: <dist>/cni); replaced as a whole
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="$root/dist"
node_bin=""
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dist) dist="$2"; shift 2 ;;
    --node) node_bin="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package-cni: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
dist="$(cd "$dist" && pwd)"
out="${out:-$dist/cni}"
fail() { echo "package-cni: $*" >&2; exit 1; }

[[ -f "$dist/bin/flatnet" ]] || fail "$dist/bin/flatnet does not exist: run ./build.sh first"
[[ -f "$dist/bin/flatnet-node" ]] || fail "$dist/bin/flatnet-node does not exist: run ./build.sh first"
shopt -s nullglob
natives=("$dist"/lib/*.node)
shopt -u nullglob
[[ ${#natives[@]} -gt 0 ]] || fail "no native modules in $dist/lib: run ./build.sh first"

if [[ -z "$node_bin" ]]; then node_bin="$(command -v node)" || fail "no node on PATH; name one with --node"; fi
node_real="$(readlink -f "$node_bin")"
[[ -x "$node_real" ]] || fail "--node $node_bin: not an executable file"
"$node_real" -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("node "+process.versions.node+" is older than 20.19"); process.exit(1) }' ||
  fail "--node $node_bin cannot run the plugin"

stage="$(mktemp -d "${out%/}.tmp.XXXXXX")"
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
payload="$stage/payload"
mkdir -p "$payload/bin" "$payload/lib" "$payload/runtime/lib"

install -m 0755 "$dist/bin/flatnet" "$payload/bin/flatnet"
install -m 0644 "$dist/bin/flatnet-node" "$payload/bin/flatnet-node.js"
for n in "${natives[@]}"; do install -m 0755 "$n" "$payload/lib/"; done
# The bundle has no extension; a package.json saying CommonJS right above bin/ keeps Node from
# reading it by some unrelated package.json further up the host's tree.
printf '{"type":"commonjs"}\n' >"$payload/package.json"
chmod 0644 "$payload/package.json"
install -m 0755 "$node_real" "$payload/runtime/node"

# The shared-library closure of node and of the natives, as the build machine resolves it.
# ldd prints `name => /path (addr)` for libraries and `/path/ld-linux… (addr)` for the loader.
loader=""
declare -A libs=()
for obj in "$node_real" "${natives[@]}"; do
  listing="$(ldd "$obj")" || fail "ldd $obj failed; is it a dynamically linked ELF file?"
  if grep -q 'not found' <<<"$listing"; then fail "ldd $obj: missing libraries: $(grep 'not found' <<<"$listing" | tr -s ' \t' ' ')"; fi
  while read -r first arrow path _; do
    case "$first" in
      linux-vdso.so.*|linux-gate.so.*) ;;
      /*) loader="$first" ;;
      *) [[ "$arrow" == "=>" && "$path" == /* ]] && libs["$first"]="$path" ;;
    esac
  done <<<"$listing"
done
[[ -n "$loader" ]] || fail "ldd $node_real names no dynamic loader; a static node needs no packaging of libraries, but this script expects a dynamic one"
loader_name="$(basename "$loader")"
install -m 0755 "$(readlink -f "$loader")" "$payload/runtime/$loader_name"
for soname in "${!libs[@]}"; do install -m 0755 "$(readlink -f "${libs[$soname]}")" "$payload/runtime/lib/$soname"; done

sed -e "s|@LOADER@|$loader_name|g" "$root/deploy/cni-fallback.sh.in" >"$payload/bin/flatnet-node"
chmod 0755 "$payload/bin/flatnet-node"

# Prove the packaged runtime starts on its own libraries before anyone installs it.
"$payload/runtime/$loader_name" --inhibit-cache --library-path "$payload/runtime/lib" "$payload/runtime/node" -e 0 ||
  fail "the packaged runtime does not start: $payload/runtime/$loader_name --library-path $payload/runtime/lib $payload/runtime/node"

# Content-addressed: the same build packages to the same id, so reinstalling it is a no-op and an
# upgrade lands beside the running version instead of over it.
id="$(cd "$payload" && find . -type f -printf '%P %m\n' | LC_ALL=C sort | while read -r f m; do printf '%s %s %s\n' "$f" "$m" "$(sha256sum <"$f" | cut -c1-64)"; done | sha256sum | cut -c1-16)"
mkdir -p "$stage/flatnet.d"
mv "$payload" "$stage/flatnet.d/$id"

sed -e "s|@ID@|$id|g" -e "s|@LOADER@|$loader_name|g" "$root/deploy/cni-launcher.sh.in" >"$stage/flatnet"
chmod 0755 "$stage/flatnet"
install -m 0755 "$root/deploy/install-cni.sh" "$stage/install-cni.sh"

rm -rf "${out%/}.old"
if [[ -e "$out" ]]; then mv "$out" "${out%/}.old"; fi
mv "$stage" "$out"
trap - EXIT
rm -rf "${out%/}.old"
size="$(du -sh "$out" | cut -f1)"
echo "packaged $out (payload flatnet.d/$id, node $("$node_real" -p process.versions.node), $size)"
