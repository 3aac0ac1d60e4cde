#!/usr/bin/env bash
# Builds flatnet: installs npm dependencies, compiles the netns addon, bundles dist/bin/*.
# Idempotent; fails loudly on the first error. Usage: ./build.sh [binary ...]
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null; then echo "build.sh: node (>= 20.19) is required" >&2; exit 1; fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("build.sh: node >= 20.19 is required, found "+process.versions.node); process.exit(1) }'

# npm ci when the lockfile matches, so a build never silently changes dependency versions.
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi

# The addon compiles against the headers of the installed Node (no download): Debian's nodejs
# and the NodeSource build both put them under <prefix>/include/node.
nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
if [[ ! -f "$nodedir/include/node/node_api.h" ]]; then
  echo "build.sh: Node headers not found under $nodedir/include/node; install them (Debian: libnode-dev or the nodejs package with headers)" >&2
  exit 1
fi
if [[ ! -f net/addon/build/Release/netns.node || net/addon/netns.cc -nt net/addon/build/Release/netns.node ]]; then
  (cd net/addon && ../../node_modules/.bin/node-gyp rebuild --nodedir="$nodedir" >/dev/null)
fi

node scripts/bundle.mjs "$@"

# The CNI entry: static, so it starts without the dynamic loader (~0.5 ms less per call) and runs
# on any Linux host whatever its libc (the self-contained package ships it to hosts without Node).
# Compiled to a temp name and renamed: a runtime may be executing dist/bin/flatnet right now.
cc_bin="${CC:-cc}"
if ! command -v "$cc_bin" >/dev/null; then echo "build.sh: a C compiler ($cc_bin) is required for the CNI entry" >&2; exit 1; fi
if [[ ! -f dist/bin/flatnet || plugin/entry/flatnet.c -nt dist/bin/flatnet || $(head -c 2 dist/bin/flatnet) == '#!' ]]; then
  "$cc_bin" -O2 -Wall -Wextra -Werror -static -o "dist/bin/flatnet.tmp-$$" plugin/entry/flatnet.c
  mv -f "dist/bin/flatnet.tmp-$$" dist/bin/flatnet
  echo "built dist/bin/flatnet (native CNI entry)"
fi
