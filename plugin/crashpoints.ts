// The plugin's named test points (the runner and its rules: ipam/testPoints.ts). The names are
// constants so the kill-point suites list exactly the steps the code has.
import { runTestPoint, StoreStep } from '../ipam/index.js'

/** ADD's steps, in order; each name says what is done when the point is reached. */
export const AddStep = {
  afterReserve: 'after-reserve',
  afterVeth: 'after-veth',
  afterPodLo: 'after-pod-lo',
  afterPodAddress: 'after-pod-address',
  afterPodUp: 'after-pod-up',
  afterPodGatewayRoute: 'after-pod-gateway-route',
  /** pod fully wired, host end bare */
  afterPodSide: 'after-pod-side',
  afterHostAlias: 'after-host-alias',
  afterHostRpFilter: 'after-host-rp-filter',
  afterHostAddress: 'after-host-address',
  afterHostUp: 'after-host-up',
  /** everything made, the result not yet printed */
  afterHostSide: 'after-host-side',
} as const
export type AddStep = (typeof AddStep)[keyof typeof AddStep]

/** DEL's steps: the host veth is gone, the address not yet released. */
export const DelStep = { afterVeth: 'del-after-veth' } as const
export type DelStep = (typeof DelStep)[keyof typeof DelStep]

export { StoreStep }

export function testCrashPoint(step: AddStep | DelStep): void {
  runTestPoint(step)
}
