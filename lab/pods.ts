// Pods of the lab: a network namespace each, attached and detached by the real plugin chain of
// the node's conflist, called the way a Kubernetes runtime calls it.
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { addNetwork, delNetwork, readConflist, resultAddresses, SYSTEM_CNI_BIN_DIR, type Attachment, type Conflist, type RuntimeHost } from './cniRuntime.js'
import { nodeLayout, podName, podNetns, type LabLayout } from './layout.js'
import { addNetns, deleteNetns, netnsPath } from './namespaces.js'
import { DEFAULT_POD_NAMESPACE, checkIdentity, podRef, type PodPort } from './podSpec.js'
import { podResolvConf } from './dns/zone.js'
import { removeResponderFiles, startResponder } from './responder.js'
import type { LabNode, LabPod } from './state.js'

/** The pod's interface name: containerd hard-codes eth0 for the default network. */
export const POD_IFNAME = 'eth0'
export const POD_K8S_NAMESPACE = DEFAULT_POD_NAMESPACE

/** What a pod is beyond its name, as `lab pod add --namespace/--label/--port` or a Pod object give it. */
export interface PodExtras {
  namespace?: string
  labels?: Record<string, string>
  ports?: PodPort[]
  /** The cluster DNS addresses (the kube-dns Service's cluster IPs): the pod gets a resolv.conf naming them. */
  nameservers?: string[]
  /** Starts the pod's process instead of a responder (the lab's cluster add-ons); resolves with its pid. */
  start?: (pod: { ref: string; netns: string; containerId: string }) => Promise<number>
}

/**
 * Where `ip netns exec` finds the pod's resolv.conf: it bind-mounts /etc/netns/<netns>/resolv.conf
 * over /etc/resolv.conf for the programs it runs (ip-netns(8)), the lab's stand-in for the file
 * kubelet writes into a pod.
 */
export function podEtcDir(netns: string): string {
  return join('/etc/netns', netns)
}

async function writePodResolvConf(netns: string, namespace: string, nameservers: readonly string[]): Promise<void> {
  await mkdir(podEtcDir(netns), { recursive: true })
  await writeFile(join(podEtcDir(netns), 'resolv.conf'), podResolvConf(namespace, nameservers))
}

function runtimeHost(lab: LabLayout, node: LabNode): RuntimeHost {
  // flatnetd installs flatnet into the node's bin dir; portmap comes from the system's plugins.
  const dirs = nodeLayout(lab, node.name)
  return { netns: node.netns, binDirs: [dirs.cniBinDir, SYSTEM_CNI_BIN_DIR], cniSocket: dirs.cniSocket }
}

function attachment(pod: Pick<LabPod, 'name' | 'netns' | 'containerId' | 'ifname' | 'k8sNamespace' | 'uid'>): Attachment {
  return {
    containerId: pod.containerId,
    netnsPath: netnsPath(pod.netns),
    ifname: pod.ifname,
    // What containerd's CRI plugin sends for a Kubernetes pod.
    args: {
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: pod.k8sNamespace ?? POD_K8S_NAMESPACE,
      K8S_POD_NAME: pod.name,
      K8S_POD_INFRA_CONTAINER_ID: pod.containerId,
      ...(pod.uid ? { K8S_POD_UID: pod.uid } : {}),
    },
  }
}

/** Names the next pod of a node (and counts it, so names are not reused while the node lives). */
export function nextPodName(node: LabNode): string {
  return podName(node.id, node.podsCreated++)
}

/**
 * The network namespace of a pod. Pods named by the lab (`pod1a`) keep `fnlab-<lab>-pod1a`; pods
 * given a Kubernetes namespace get `fnlab-<lab>-<namespace>.<name>`: a namespace name has no '.',
 * so the first '.' separates the two and `x/a` and `y/a` never collide with each other, with
 * the lab-named pods or with nodes (neither has a '.').
 */
export function podNetnsFor(lab: LabLayout, name: string, namespace: string | undefined): string {
  return namespace === undefined ? podNetns(lab, name) : `${lab.prefix}${namespace}.${name}`
}

/**
 * Creates the pod's namespace, runs ADD, then starts its responder (its ports, and probes from
 * inside it); on failure nothing of the pod is left.
 */
export async function addPod(lab: LabLayout, node: LabNode, name: string, extras: PodExtras = {}): Promise<LabPod> {
  const ports = extras.ports ?? []
  checkIdentity({ namespace: extras.namespace ?? POD_K8S_NAMESPACE, name, labels: extras.labels ?? {}, ports })
  const netns = podNetnsFor(lab, name, extras.namespace)
  // A sandbox id as runtimes make them: 64 hex characters.
  const containerId = randomBytes(32).toString('hex')
  const draft = {
    name,
    netns,
    containerId,
    ifname: POD_IFNAME,
    k8sNamespace: extras.namespace ?? POD_K8S_NAMESPACE,
    labels: extras.labels ?? {},
    ports,
    uid: randomUUID(),
    createdAt: new Date().toISOString(),
  }
  await addNetns(netns)
  let list: Conflist | undefined
  try {
    list = await readConflist(nodeLayout(lab, node.name).conflist)
    const result = await addNetwork(runtimeHost(lab, node), list, attachment(draft))
    if (extras.nameservers?.length) await writePodResolvConf(netns, draft.k8sNamespace, extras.nameservers)
    const started = { ref: podRef(draft), netns, containerId }
    const responderPid = extras.start ? await extras.start(started) : await startResponder(lab, { ...started, ports })
    const addresses = resultAddresses(result)
    return { ...draft, node: node.name, address: addresses[0]!, addresses, result, responderPid }
  } catch (err) {
    // As a runtime does after a failed setup: DEL the attachment (releases whatever a plugin of
    // the chain already did), then drop the sandbox.
    if (list) await delNetwork(runtimeHost(lab, node), list, attachment(draft), undefined).catch(() => undefined)
    await deleteNetns(netns).catch(() => undefined)
    await rm(podEtcDir(netns), { recursive: true, force: true }).catch(() => undefined)
    await removeResponderFiles(lab, containerId).catch(() => undefined)
    throw new Error(`add pod ${podRef(draft)} on ${node.name}: ${(err as Error).message}`)
  }
}

/** DEL through the chain with the cached result, then the namespace goes, as a runtime does. */
export async function deletePod(lab: LabLayout, node: LabNode | undefined, pod: LabPod): Promise<void> {
  if (node) {
    const list = await readConflist(nodeLayout(lab, node.name).conflist)
    try {
      await delNetwork(runtimeHost(lab, node), list, attachment(pod), pod.result)
    } catch (err) {
      throw new Error(`delete pod ${podRef(pod)} on ${node.name}: ${(err as Error).message}`)
    }
  }
  // The responder goes with the namespace (deleteNetns stops every process inside it).
  await deleteNetns(pod.netns)
  await rm(podEtcDir(pod.netns), { recursive: true, force: true })
  await removeResponderFiles(lab, pod.containerId)
}
