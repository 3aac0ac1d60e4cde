// Manifests as `flatnetctl apply -f` reads them: multi-document YAML/JSON and Lists, and the
// validation errors, which name the document, the object, the field and the value.
import t from 'tap'
import { ManifestError, readManifests } from './manifests.js'

const errorOf = (text: string): string => {
  try {
    readManifests(text, 'm.yaml')
    return 'no error'
  } catch (err) {
    return err instanceof ManifestError ? err.message : `not a ManifestError: ${(err as Error).message}`
  }
}

const np = (spec: string) => `apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec:\n${spec}`

t.test('multi-document YAML, JSON and Lists; empty documents skipped; numbered in order', async (t) => {
  const objects = readManifests(
    [
      'apiVersion: v1\nkind: Namespace\nmetadata: {name: x}',
      '',
      '{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}}]}',
    ].join('\n---\n'),
    'm.yaml',
  )
  t.same(
    objects.map((o) => [o.document, o.object.kind, o.object.metadata?.name]),
    [
      [1, 'Namespace', 'x'],
      [2, 'Pod', 'a'],
    ],
  )
})

t.test('schema errors name the document, object, field and value', async (t) => {
  t.equal(
    errorOf('apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {tier: 1}}\nspec: {containers: [{name: c, ports: [{containerPort: eighty}]}]}'),
    'm.yaml: document 1 (Pod default/a): metadata.labels.tier: Invalid value: 1: must be string; spec.containers[0].ports[0].containerPort: Invalid value: "eighty": must be integer',
  )
  t.equal(
    errorOf(np('  podSelector: {}\n  policyTypes: [Ingres]')),
    'm.yaml: document 1 (NetworkPolicy x/p): spec.policyTypes[0]: Invalid value: "Ingres": must be equal to one of the allowed values ("Egress", "Ingress")',
  )
  t.equal(
    errorOf('apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}'),
    'm.yaml: document 1 (d): kind "Deployment" is not one flatnet stores; expected Namespace, Pod, NetworkPolicy, Service, EndpointSlice',
  )
  t.equal(
    errorOf('apiVersion: v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}'),
    'm.yaml: document 1 (NetworkPolicy default/p): apiVersion: Invalid value: "v1": NetworkPolicy is served as networking.k8s.io/v1',
  )
})

t.test("the API server's rules beyond the schema", async (t) => {
  t.equal(
    errorOf(np('  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}, {}]}]')),
    'm.yaml: document 1 (NetworkPolicy x/p): spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer; spec.ingress[0].from[1]: Required value',
  )
  t.equal(
    errorOf(np('  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8, 11.0.0.0/16, bad]}}]}]')),
    'm.yaml: document 1 (NetworkPolicy x/p): spec.egress[0].to[0].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`; spec.egress[0].to[0].ipBlock.except[1]: Invalid value: "11.0.0.0/16": must be a strict subset of `cidr`; spec.egress[0].to[0].ipBlock.except[2]: Invalid value: "bad": must be a valid CIDR',
  )
  t.equal(
    errorOf(np('  podSelector: {}\n  ingress: [{ports: [{port: 80, endPort: 79}, {port: http, endPort: 90}, {port: 70000}, {port: Bad--name}]}]')),
    "m.yaml: document 1 (NetworkPolicy x/p): spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`; spec.ingress[0].ports[1].port: Required value; spec.ingress[0].ports[2].port: Invalid value: 70000: must be between 1 and 65535, inclusive; spec.ingress[0].ports[3].port: Invalid value: \"Bad--name\": must be no more than 15 characters, contain only lowercase alphanumeric characters or '-', at least one letter, and no '--' or leading/trailing '-'",
  )
  t.equal(
    errorOf(np('  podSelector: {matchExpressions: [{key: a, operator: In}, {key: b, operator: Exists, values: [x]}, {key: c, operator: Near}]}')),
    'm.yaml: document 1 (NetworkPolicy x/p): spec.podSelector.matchExpressions[0].values: Required value; spec.podSelector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is \'Exists\' or \'DoesNotExist\'; spec.podSelector.matchExpressions[2].operator: Unsupported value: "Near": supported values: "In", "NotIn", "Exists", "DoesNotExist"',
  )
  t.equal(
    errorOf('apiVersion: v1\nkind: Namespace\nmetadata: {name: Not_A_Label, labels: {"-bad": "x y"}}'),
    "m.yaml: document 1 (Namespace Not_A_Label): metadata.name: Invalid value: \"Not_A_Label\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character; metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters); metadata.labels[-bad]: Invalid value: \"x y\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)",
  )
  t.equal(
    errorOf(np('  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.1.2.3/8, except: [10.1.0.0/16]}}]}]')),
    'no error',
    'an ipBlock cidr with host bits is accepted, as the API server does',
  )
})

t.test('every invalid document is named; nothing is returned when one is invalid', async (t) => {
  t.equal(
    errorOf('apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c}]}\n---\nkind: Widget'),
    'm.yaml: 2 invalid documents, nothing applied:\n  document 2 (Pod default/<no name>): metadata.name: Required value\n  document 3: kind "Widget" is not one flatnet stores; expected Namespace, Pod, NetworkPolicy, Service, EndpointSlice',
  )
  t.equal(errorOf('a: [unclosed'), 'm.yaml: document 1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 1, column 13')
})
