// Kubernetes label selectors (metav1.LabelSelector) as NetworkPolicy uses them: `matchLabels` AND
// `matchExpressions`, operators In, NotIn, Exists, DoesNotExist. An empty selector matches every
// object. NotIn and DoesNotExist match objects that lack the key (apimachinery's labels.Selector).
// A selector the API server would refuse (an unknown operator, In/NotIn without values, values
// with Exists) matches nothing: enforcing a policy more narrowly than written never opens traffic.
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1'

/** metav1.LabelSelector, as the NetworkPolicy types carry it. */
export type ILabelSelector = NonNullable<INetworkPolicyPeer['podSelector']>

export type Labels = Readonly<Record<string, string>>

export function selectorMatches(selector: ILabelSelector | undefined, labels: Labels | undefined): boolean {
  const have = labels ?? {}
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {})) {
    if (have[key] !== value) return false
  }
  for (const req of selector?.matchExpressions ?? []) {
    const present = Object.prototype.hasOwnProperty.call(have, req.key)
    const values = req.values ?? []
    switch (req.operator) {
      case 'In':
        if (values.length === 0 || !present || !values.includes(have[req.key]!)) return false
        break
      case 'NotIn':
        if (values.length === 0 || (present && values.includes(have[req.key]!))) return false
        break
      case 'Exists':
        if (values.length !== 0 || !present) return false
        break
      case 'DoesNotExist':
        if (values.length !== 0 || present) return false
        break
      default:
        return false
    }
  }
  return true
}

/** A canonical text of a selector, so equal selectors share one nftables set. */
export function selectorKey(selector: ILabelSelector | undefined): string {
  const labels = Object.entries(selector?.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  const exprs = (selector?.matchExpressions ?? []).map((e) => [e.key, e.operator, [...(e.values ?? [])].sort()]).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))
  return JSON.stringify([labels, exprs])
}
