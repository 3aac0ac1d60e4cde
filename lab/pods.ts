// Pods of the lab: a network namespace each, attached and detached by the real plugin chain of
// the node's conflist, called the way a Kubernetes runtime calls it.
import { randomBytes } from 'node:crypto'
import { addNetwork, delNetwork, readConflist, resultAddresses, SYSTEM_CNI_BIN_DIR, type Attachment, type Conflist, type RuntimeHost } from './cniRuntime.js'
import { nodeLayout, podName, podNetns, type LabLayout } from './layout.js'
import { addNetns, deleteNetns, netnsPath } from './namespaces.js'
import type { LabNode, LabPod } from './state.js'

/** The pod's interface name: containerd hard-codes eth0 for the default network. */
export const POD_IFNAME = 'eth0'
export const POD_K8S_NAMESPACE = 'default'

function runtimeHost(lab: LabLayout, node: LabNode): RuntimeHost {
  // flatnetd installs flatnet into the node's bin dir; portmap comes from the system's plugins.
  const dirs = nodeLayout(lab, node.name)
  return { netns: node.netns, binDirs: [dirs.cniBinDir, SYSTEM_CNI_BIN_DIR], cniSocket: dirs.cniSocket }
}

function attachment(pod: Pick<LabPod, 'name' | 'netns' | 'containerId' | 'ifname'>): Attachment {
  return {
    containerId: pod.containerId,
    netnsPath: netnsPath(pod.netns),
    ifname: pod.ifname,
    // What containerd's CRI plugin sends for a Kubernetes pod.
    args: {
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: POD_K8S_NAMESPACE,
      K8S_POD_NAME: pod.name,
      K8S_POD_INFRA_CONTAINER_ID: pod.containerId,
    },
  }
}

/** Names the next pod of a node (and counts it, so names are not reused while the node lives). */
export function nextPodName(node: LabNode): string {
  return podName(node.id, node.podsCreated++)
}

/** Creates the pod's namespace and runs ADD; on failure nothing of the pod is left. */
export async function addPod(lab: LabLayout, node: LabNode, name: string): Promise<LabPod> {
  const netns = podNetns(lab, name)
  // A sandbox id as runtimes make them: 64 hex characters.
  const containerId = randomBytes(32).toString('hex')
  const draft = { name, netns, containerId, ifname: POD_IFNAME }
  await addNetns(netns)
  let list: Conflist | undefined
  try {
    list = await readConflist(nodeLayout(lab, node.name).conflist)
    const result = await addNetwork(runtimeHost(lab, node), list, attachment(draft))
    const addresses = resultAddresses(result)
    return { ...draft, node: node.name, address: addresses[0]!, addresses, result }
  } catch (err) {
    // As a runtime does after a failed setup: DEL the attachment (releases whatever a plugin of
    // the chain already did), then drop the sandbox.
    if (list) await delNetwork(runtimeHost(lab, node), list, attachment(draft), undefined).catch(() => undefined)
    await deleteNetns(netns).catch(() => undefined)
    throw new Error(`add pod ${name} on ${node.name}: ${(err as Error).message}`)
  }
}

/** DEL through the chain with the cached result, then the namespace goes, as a runtime does. */
export async function deletePod(lab: LabLayout, node: LabNode | undefined, pod: LabPod): Promise<void> {
  if (node) {
    const list = await readConflist(nodeLayout(lab, node.name).conflist)
    try {
      await delNetwork(runtimeHost(lab, node), list, attachment(pod), pod.result)
    } catch (err) {
      throw new Error(`delete pod ${pod.name} on ${node.name}: ${(err as Error).message}`)
    }
  }
  await deleteNetns(pod.netns)
}
