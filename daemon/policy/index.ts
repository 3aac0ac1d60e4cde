// The public face of daemon/policy: NetworkPolicy compiled for one node (compile.ts) into the
// `inet flatnet-policy` table (table.ts). Pure; the reconciler is ../reconcilers/policy.ts.
export { compilePolicies, policyTypes, NAMESPACE_NAME_LABEL, type PolicyInputs } from './compile.js'
export { POLICY_TABLE, DROP_COUNTERS, policyTable } from './table.js'
export type { AllowRule, Direction, PolicyPlan } from './plan.js'
export { selectorMatches } from './selectors.js'
