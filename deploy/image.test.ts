// deploy/Dockerfile, checked offline (no Docker daemon runs here): the build stage gets every file
// ./build.sh and scripts/package-cni.sh need from the context, and the runtime stage's COPY
// sources exist once they have run. The runtime image's file tree is then assembled in a temp dir
// from the same sources, and what the DaemonSet runs in it is run here: the entrypoint, the
// bundles with their natives and protos found by their relative paths, and the init container's
// install-cni.sh installing a plugin that answers VERSION with no node on PATH.
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import t from 'tap'
import { exactEnvArgv, run, runOk, testDir } from '../e2e/helpers/index.js'
import { bundleMissingReason, distDir, packageCni, repoRoot } from './testing/cniPackage.js'
import { copiesOf, execForm, isIgnored, parseDockerfile, parseDockerignore } from './testing/dockerfile.js'
import { readManifest, type KubeObject } from './testing/manifests.js'

const skip = bundleMissingReason()
const stages = parseDockerfile(readFileSync(join(repoRoot, 'deploy/Dockerfile'), 'utf8'))
const ignore = parseDockerignore(readFileSync(join(repoRoot, 'deploy/Dockerfile.dockerignore'), 'utf8'))
const build = stages.find((s) => s.name === 'build')!
const final = stages.at(-1)!
const daemonSet = readManifest(join(repoRoot, 'deploy/flatnet.yaml')).find((d) => d.kind === 'DaemonSet') as KubeObject & IDaemonSet
const podSpec = daemonSet.spec!.template.spec!

/** Where the build stage keeps the repository (its WORKDIR). */
/** The entry points scripts/bundle.mjs builds (read from its text: importing it would run a build). */
const bundleEntries = [...(/export const binaries = \{([^}]*)\}/.exec(readFileSync(join(repoRoot, 'scripts/bundle.mjs'), 'utf8'))?.[1] ?? '').matchAll(/'([^']+\.ts)'/g)].map((m) => m[1]!)

const SRC = (build.instructions.find((i) => i.keyword === 'WORKDIR')?.args ?? '').replace(/\/+$/, '')

t.test("two stages on the same Node 20 Debian base: natives are built against the runtime stage's Node and glibc", async (t) => {
  t.equal(stages.length, 2, 'build and runtime')
  t.equal(build.image, final.image, `both FROM ${final.image}`)
  t.match(final.image, /^node:20(\.\d+)*-bookworm(-slim)?$/, 'Node 20 (>= 20.19 per package.json engines) on Debian 12, as the tests run')
  t.equal(SRC, '/src', 'the build stage works in /src')
})

t.test('the build stage gets from the context every file the build and the packaging read', async (t) => {
  const tracked = (await runOk(['git', '-C', repoRoot, 'ls-files'])).stdout.split('\n').filter(Boolean)
  const context = new Set(tracked.filter((f) => !isIgnored(ignore, f)))
  const copies = copiesOf(build).filter((c) => !c.from)
  t.ok(
    copies.some((c) => c.sources.includes('.')),
    'COPY . copies the (filtered) repository',
  )
  for (const c of copies) for (const s of c.sources) if (s !== '.') t.ok(context.has(s), `COPY ${s} (line ${c.line}) is in the context`)
  const needed = [
    'package.json',
    'package-lock.json',
    'build.sh',
    'tsconfig.json',
    'scripts/bundle.mjs',
    'scripts/package-cni.sh',
    'deploy/install-cni.sh',
    'deploy/cni-launcher.sh.in',
    'net/addon/binding.gyp',
    'net/addon/netns.cc',
    ...bundleEntries,
  ]
  t.ok(bundleEntries.length >= 3, `bundle entry points: ${bundleEntries.join(', ')}`)
  for (const f of needed) t.ok(context.has(f), `${f} reaches the build`)
  for (const local of ['node_modules/.package-lock.json', 'dist/bin/flatnet', 'net/addon/build/Release/netns.node']) {
    t.ok(isIgnored(ignore, local), `${local} stays out: the image builds its own, for its own Node and libc`)
  }
  const runs = build.instructions
    .filter((i) => i.keyword === 'RUN')
    .map((i) => i.args)
    .join('\n')
  t.match(runs, /\.\/build\.sh/, 'the build stage runs ./build.sh')
  t.match(runs, /scripts\/package-cni\.sh/, 'and packages the plugin')
  t.match(runs, /\bg\+\+/, 'with a C++ compiler for the netns addon')
})

t.test('the runtime stage installs nftables (flatnetd runs nft) and iproute2', async (t) => {
  const runs = final.instructions
    .filter((i) => i.keyword === 'RUN')
    .map((i) => i.args)
    .join('\n')
  const install = /apt-get install[^&]*/.exec(runs)?.[0] ?? ''
  t.match(install, /\bnftables\b/, 'nftables')
  t.match(install, /\biproute2\b/, 'iproute2')
  t.notOk(
    final.instructions.some((i) => i.keyword === 'USER'),
    'root (the DaemonSet drops every capability but NET_ADMIN)',
  )
})

t.test("the runtime image, assembled from the build output: entrypoint, bundles, the init container's installer", { skip }, async (t) => {
  const { dir } = testDir(t, 'image')
  // The build stage's /src after `./build.sh && scripts/package-cni.sh`: this checkout's dist
  // (from ./build.sh) and a fresh package in dist/cni.
  const src = join(dir, 'src')
  mkdirSync(join(src, 'dist'), { recursive: true })
  for (const e of readdirSync(distDir)) if (e !== 'cni') symlinkSync(join(distDir, e), join(src, 'dist', e))
  await packageCni(join(src, 'dist', 'cni'))

  const image = join(dir, 'image')
  for (const c of copiesOf(final)) {
    t.equal(c.from, 'build', `COPY line ${c.line} takes from the build stage`)
    for (const s of c.sources) {
      t.ok(s.startsWith(`${SRC}/`), `${s} is under ${SRC}`)
      const local = join(src, s.slice(SRC.length + 1))
      t.ok(existsSync(local), `COPY --from=build ${s} exists after the build (line ${c.line})`)
      const target = join(image, c.dest)
      mkdirSync(dirname(target), { recursive: true })
      cpSync(local, target, { recursive: true, dereference: true })
    }
  }
  const inImage = (p: string) => join(image, p)
  const isExecutable = (p: string) => existsSync(inImage(p)) && (statSync(inImage(p)).mode & 0o111) !== 0

  const entrypoint = execForm(final, 'ENTRYPOINT')
  t.ok(entrypoint && isExecutable(entrypoint[0]!), `ENTRYPOINT ${entrypoint?.[0]} is an executable in the image`)
  for (const c of [...podSpec.containers, ...(podSpec.initContainers ?? [])]) {
    const cmd = c.command?.[0]
    t.ok(cmd && isExecutable(cmd), `container ${c.name} runs ${cmd}, an executable in the image`)
  }
  // What the bundles load by relative path (scripts/bundle.mjs): natives in ../lib, etcd3's protos
  // in ../proto, and ../package.json saying CommonJS.
  for (const f of readdirSync(join(distDir, 'lib'))) t.ok(existsSync(inImage(`/opt/flatnet/lib/${f}`)), `native ${f} beside the bundles`)
  for (const f of readdirSync(join(distDir, 'proto'))) t.ok(existsSync(inImage(`/opt/flatnet/proto/${f}`)), `proto ${f} beside the bundles`)
  t.same(JSON.parse(readFileSync(inImage('/opt/flatnet/package.json'), 'utf8')), { type: 'commonjs' }, 'package.json above bin/')

  // Run them from the assembled tree (this machine's node plays the image's).
  const daemonHelp = await run([process.execPath, inImage(entrypoint![0]!), '--help'], { env: { PATH: process.env.PATH } })
  t.equal(daemonHelp.code, 0, 'flatnetd --help from the image tree')
  t.match(daemonHelp.stdout, /--datastore/, 'flatnetd prints its flags')
  const ctl = await run([process.execPath, inImage('/opt/flatnet/bin/flatnetctl'), '--help'], { env: { PATH: process.env.PATH } })
  t.equal(ctl.code, 0, 'flatnetctl --help from the image tree')
  // The netlink native loads from ../lib (a bundle that lost it fails at require).
  const natives = await run([process.execPath, '-e', `require(${JSON.stringify(inImage('/opt/flatnet/lib/netlink.node'))}); require(${JSON.stringify(inImage('/opt/flatnet/lib/netns.node'))})`])
  t.equal(natives.code, 0, `the natives in the image load: ${natives.stderr}`)

  // The init container: its command, with its host mount played by a temp dir.
  const installer = podSpec.initContainers!.find((c) => c.name === 'install-cni')!
  const [script, dest] = installer.command!
  const hostBin = join(dir, 'host-opt-cni-bin')
  mkdirSync(hostBin)
  chmodSync(hostBin, 0o755)
  t.equal(dest, '/host/opt/cni/bin', 'the installer writes the mounted host bin dir')
  const installed = await run([inImage(script!), hostBin], { timeoutMs: 120_000 })
  t.equal(installed.code, 0, `${script} ${dest} succeeds: ${installed.stdout}${installed.stderr}`)
  const version = await run(exactEnvArgv({ CNI_COMMAND: 'VERSION', PATH: '/nonexistent' }, [join(hostBin, 'flatnet')]))
  t.match(JSON.parse(version.stdout || 'null'), { cniVersion: '1.1.0' }, 'the plugin it installed answers VERSION with no node on PATH')
})
