// The lab's public face: a multi-node flatnet cluster on one machine out of network namespaces.
// `flatnetctl lab …` (cli/) and the e2e tests use only this.
export {
  labDown,
  labDownAll,
  labNodeAdd,
  labNodeDel,
  labNodeStart,
  labNodeStop,
  labPodAdd,
  labPodDel,
  findPod,
  labStatus,
  labUp,
  layoutOf,
  subnetsText,
  type DownReport,
  type LabRef,
  type LabStatus,
  type LabUpOptions,
  type NodeAddOptions,
  type NodeDelReport,
  type PodAddOptions,
  type Progress,
} from './lab.js'
export { labCheck, evaluateCheck, REQUIREMENTS, type CheckReport, type ProbeRecord, type RequirementId, type RequirementResult } from './check.js'
export { renderCheck, renderStatus } from './report.js'
export {
  BACKENDS,
  DEFAULT_BACKEND,
  DEFAULT_SEGMENTS,
  DEFAULT_TOPOLOGY,
  MAX_SEGMENTS,
  ROUTED_NETWORK,
  TOPOLOGIES,
  type LabBackend,
  type LabTopology,
  DEFAULT_CLUSTER_CIDR,
  DEFAULT_CLUSTER_CIDR6,
  DEFAULT_IP_FAMILY,
  DEFAULT_LAB_NAME,
  DEFAULT_LAB_ROOT,
  IP_FAMILIES,
  LAB_NETWORK,
  LAB_NETWORK6,
  NETNS_PREFIX,
  PROBE_PORT,
  checkLabName,
  familiesOf,
  labLayout,
  type LabIpFamily,
} from './layout.js'
export { readLabState, LabMissingError, type LabNode, type LabPod, type LabState } from './state.js'
export { ProbeAgent, probeOnce, startProbeAgents, stopProbeAgents, type ProbeResult } from './probeAgent.js'
export { peerRoutes, flatnetRoutes, interfaceAddresses, backendOfRoute, FLATNET_ROUTE_PROTOCOL, VXLAN_DEVICE_PREFIX, type PeerBackend, type PeerRoute } from './kernelView.js'
export { parseLabels, parsePort, podRef, parsePodRef, portText, type PodIdentity, type PodPort, type PortProtocol } from './podSpec.js'
export { PodProber, controlSocketPath, type PodProbeResult, type ProbeProtocol, type ProbeRequest, type ResponderAnswer } from './responder.js'
