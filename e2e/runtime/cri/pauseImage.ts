// The sandbox ("pause") image the CRI plugin starts for every pod, built offline: an OCI image
// layout (oci-layout, index.json, blobs) holding one uncompressed layer made from Debian's
// busybox-static, whose entrypoint sleeps. Imported into containerd's k8s.io namespace, where the
// CRI plugin looks its sandbox_image up; no registry is ever contacted.
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runOk } from '../../helpers/index.js'
import { busyboxRootfs } from '../busybox.js'

export const PAUSE_IMAGE = 'flatnet.test/pause:busybox'

/** Node's process.arch as an OCI platform architecture. */
function ociArch(): string {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' }
  const a = arch[process.arch]
  if (!a) throw new Error(`build pause image: no OCI architecture for ${process.arch}`)
  return a
}

function blob(layout: string, bytes: Buffer): { digest: string; size: number } {
  const hex = createHash('sha256').update(bytes).digest('hex')
  writeFileSync(join(layout, 'blobs', 'sha256', hex), bytes)
  return { digest: `sha256:${hex}`, size: bytes.length }
}

/** Writes `<dir>/pause.tar` (an OCI layout archive named PAUSE_IMAGE) and returns its path. */
export async function buildPauseImage(dir: string): Promise<string> {
  const rootfs = busyboxRootfs(join(dir, 'rootfs'))
  const layout = join(dir, 'layout')
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true })
  const layerTar = join(dir, 'layer.tar')
  await runOk(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', layerTar, '.'])
  // An uncompressed layer: its digest is also its diff ID.
  const layer = blob(layout, readFileSync(layerTar))
  const config = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        architecture: ociArch(),
        os: 'linux',
        // A sandbox only holds the pod's namespaces open; the CRI plugin SIGKILLs it on stop.
        config: { Entrypoint: ['/bin/sleep', '2147483647'] },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  )
  const manifest = blob(
    layout,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    ),
  )
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          // `ctr images import` names the image after this annotation.
          annotations: { 'io.containerd.image.name': PAUSE_IMAGE, 'org.opencontainers.image.ref.name': PAUSE_IMAGE.split(':')[1] },
        },
      ],
    }),
  )
  const archive = join(dir, 'pause.tar')
  await runOk(['tar', '-C', layout, '-cf', archive, 'oci-layout', 'index.json', 'blobs'])
  return archive
}
