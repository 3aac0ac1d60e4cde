// `flatnetctl apply|delete|get` as an operator runs them: the built dist/bin/flatnetctl on a temp
// file datastore, judged by its output, exit code and what the objects file holds afterwards.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { testDir } from '../e2e/helpers/prefix.js'
import { flatnetBinary } from '../lab/binaries.js'

const flatnetctl = flatnetBinary('flatnetctl')

function datastore(t: Test) {
  const { dir } = testDir(t, 'objcli')
  const run = (args: string[], stdin?: string) => {
    const r = spawnSync(process.execPath, [flatnetctl, ...args, '--datastore', 'file', '--datastore-file', join(dir, 'nodes.json')], { input: stdin, encoding: 'utf8' })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  const stored = async () =>
    JSON.parse(await readFile(join(dir, 'objects.json'), 'utf8')) as {
      kinds: Record<string, { objects: Array<{ metadata: { name: string; namespace?: string; labels?: Record<string, string> }; spec?: unknown }> }>
    }
  return { dir, run, stored }
}

const manifest = `apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: web}}
spec:
  containers: [{name: c, image: busybox, ports: [{containerPort: 80, name: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-in, namespace: x}
spec:
  podSelector: {}
`

t.test('apply -f creates, says what it did per object as kubectl does, and is idempotent', async (t) => {
  const { dir, run, stored } = datastore(t)
  await writeFile(join(dir, 'm.yaml'), manifest)
  const first = run(['apply', '-f', join(dir, 'm.yaml')])
  t.same(first, { code: 0, stdout: 'namespace/x created\npod/a created\nnetworkpolicy.networking.k8s.io/deny-in created\n', stderr: '' })
  const state = await stored()
  t.same(
    state.kinds.Pod!.objects.map((o) => `${o.metadata.namespace}/${o.metadata.name}`),
    ['x/a'],
  )
  t.same((state.kinds.NetworkPolicy!.objects[0]!.spec as { policyTypes: string[] }).policyTypes, ['Ingress'], 'policyTypes defaulted in what is stored')
  t.same(run(['apply', '-f', join(dir, 'm.yaml')]).stdout, 'namespace/x unchanged\npod/a unchanged\nnetworkpolicy.networking.k8s.io/deny-in unchanged\n')
  const relabel = run(['apply', '-f', '-'], manifest.replace('app: web', 'app: db'))
  t.equal(relabel.stdout, 'namespace/x unchanged\npod/a configured\nnetworkpolicy.networking.k8s.io/deny-in unchanged\n', 'stdin works; a label change configures')
  t.same((await stored()).kinds.Pod!.objects[0]!.metadata.labels, { app: 'db' })
})

t.test('get: tables, one object, -A, -o json|yaml|name, NotFound', async (t) => {
  const { run } = datastore(t)
  run(['apply', '-f', '-'], manifest)
  const ns = run(['get', 'namespaces'])
  t.equal(ns.code, 0)
  t.match(ns.stdout, /^NAME +STATUS +AGE +LABELS\ndefault +Active .*kubernetes\.io\/metadata\.name=default\nkube-system .*\nx +Active +\S+ +team=blue,kubernetes\.io\/metadata\.name=x\n$/)
  t.equal(run(['get', 'pods']).stdout, 'No resources found in default namespace.\n')
  t.match(run(['get', 'po', '-A']).stdout, /^NAMESPACE +NAME +STATUS +IP +NODE +AGE +LABELS\nx +a +Pending +<none> +<none> +\S+ +app=web\n$/)
  const one = JSON.parse(run(['get', 'netpol', 'deny-in', '-n', 'x', '-o', 'json']).stdout) as { kind: string; spec: { policyTypes: string[] }; metadata: { uid: string } }
  t.equal(one.kind, 'NetworkPolicy')
  t.same(one.spec.policyTypes, ['Ingress'])
  t.match(one.metadata.uid, /^[0-9a-f-]{36}$/)
  t.match(run(['get', 'pods', '-n', 'x', '-o', 'yaml']).stdout, /^apiVersion: v1\nkind: List\nitems:\n {2}- apiVersion: v1\n {4}kind: Pod\n/)
  t.equal(run(['get', 'networkpolicies', '-A', '-o', 'name']).stdout, 'networkpolicy.networking.k8s.io/deny-in\n')
  t.same(run(['get', 'pods', 'nope']), { code: 1, stdout: '', stderr: 'flatnetctl: Error from server (NotFound): pods "nope" not found in namespace default\n' })
  t.equal(run(['get', 'deployments']).stderr, 'flatnetctl: the server doesn\'t have a resource type "deployments" (flatnet stores namespaces, pods, networkpolicies, services, endpointslices)\n')
})

t.test("get services: kubectl's columns, node ports after the port, ExternalName and headless as kubectl shows them", async (t) => {
  const { run } = datastore(t)
  const services = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  ports: [{name: http, port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {type: ExternalName, externalName: db.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: hl}
spec: {clusterIP: None, selector: {app: x}}
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  ports: [{port: 443}]
`
  t.equal(run(['apply', '-f', '-'], services).stdout, 'service/web created\nservice/dns created\nservice/db created\nservice/hl created\nservice/lb created\n')
  const table = run(['get', 'svc']).stdout.split('\n')
  t.match(table[0], /^NAME +TYPE +CLUSTER-IP +EXTERNAL-IP +PORT\(S\) +AGE$/)
  t.match(table[1], /^db +ExternalName +<none> +db\.example\.com +<none> +\d+s$/)
  t.match(table[2], /^dns +ClusterIP +10\.96\.0\.10 +<none> +53\/UDP +\d+s$/)
  t.match(table[3], /^hl +ClusterIP +None +<none> +<none> +\d+s$/)
  t.match(table[4], /^lb +LoadBalancer +10\.96\.\d+\.\d+ +<pending> +443:3\d{4}\/TCP +\d+s$/)
  t.match(table[5], /^web +NodePort +10\.96\.\d+\.\d+ +<none> +80:30080\/TCP,53:3\d{4}\/UDP +\d+s$/)
  t.equal(
    run(['delete', '-f', '-'], services).stdout,
    'service "lb" deleted from default namespace\nservice "hl" deleted from default namespace\nservice "db" deleted from default namespace\nservice "dns" deleted from default namespace\nservice "web" deleted from default namespace\n',
  )
  t.equal(run(['get', 'services']).stdout, 'No resources found in default namespace.\n')
})

t.test('apply refuses an invalid manifest whole, naming document, object, field and value; a missing namespace fails its object only', async (t) => {
  const { dir, run } = datastore(t)
  const bad = run(
    ['apply', '-f', '-'],
    `${manifest}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: x}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n`,
  )
  t.same(bad, { code: 1, stdout: '', stderr: 'flatnetctl: stdin: document 4 (NetworkPolicy x/b): spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n' })
  t.notOk(existsSync(join(dir, 'objects.json')), 'nothing applied: the store was not even opened')
  const orphan = run(['apply', '-f', '-'], manifest.split('---')[1]!)
  t.same(orphan, { code: 1, stdout: '', stderr: 'flatnetctl: document 1: create Pod x/a: namespaces "x" not found\n' })
})

t.test('delete -f deletes in reverse order; missing objects fail unless --ignore-not-found', async (t) => {
  const { run, stored } = datastore(t)
  run(['apply', '-f', '-'], manifest)
  t.same(run(['delete', '-f', '-'], manifest), {
    code: 0,
    stdout: 'networkpolicy "deny-in" deleted from x namespace\npod "a" deleted from x namespace\nnamespace "x" deleted\n',
    stderr: '',
  })
  const state = await stored()
  t.same([state.kinds.Pod!.objects, state.kinds.NetworkPolicy!.objects], [[], []])
  t.same(
    state.kinds.Namespace!.objects.map((o) => o.metadata.name),
    ['default', 'kube-system'],
  )
  const again = run(['delete', '-f', '-'], manifest)
  t.equal(again.code, 1)
  t.equal(again.stderr.split('\n')[0], 'flatnetctl: Error from server (NotFound): networkpolicies "deny-in" not found in namespace x')
  t.equal(run(['delete', '-f', '-', '--ignore-not-found'], manifest).code, 0)
})
