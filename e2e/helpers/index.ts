// Shared test helpers: throw-away namespaces, calling a CNI plugin like a runtime does, and
// reading kernel state for assertions. See README.md in this folder.
export { run, runOk, type RunOptions, type RunResult } from './run.js'
export { OWNERS_DIR, TEST_PREFIX, releasePrefix, testDir, uniquePrefix, type Teardown } from './prefix.js'
export { TestNamespaces, inNetns, inNetnsOk, netnsPath, testNamespaces, type Netns } from './netns.js'
export {
  cniResult,
  parseCniCall,
  exactEnvArgv,
  pluginConfig,
  runCni,
  runtimeEnv,
  type CniCall,
  type CniCallOptions,
  type CniCommand,
  type CniEnv,
  type CniInterface,
  type CniIp,
  type CniResult,
  type CniRoute,
  type Conflist,
} from './cni.js'
export { addresses, ipv4Of, link, links, routeGet, routes, sysctl, type AddressState, type LinkState, type RouteLookup, type RouteState, type Where } from './kernel.js'
export { flatnetBinary, flatnetTestBinary, flatnetMissingReason, REFERENCE_CNI_DIR } from './plugins.js'
export { testRanges, type TestRange } from './ranges.js'
export { flatnetConflist, referenceConflist, type NetworkSpec } from './networks.js'
