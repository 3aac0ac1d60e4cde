// The pod a forwarded CNI call names (CNI_ARGS as the kubelet's runtimes pass it), which the CNI
// server hands to NetworkPolicy with the addresses of a successful ADD.
import t from 'tap'
import { podOfCniArgs } from './cniServer.js'

t.test("CNI_ARGS's K8S_POD_NAMESPACE and K8S_POD_NAME name the pod; without both there is none", async (t) => {
  t.same(podOfCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u'), { namespace: 'x', name: 'web-0' })
  t.equal(podOfCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web-0'), undefined)
  t.equal(podOfCniArgs(''), undefined)
  t.equal(podOfCniArgs(undefined), undefined)
  t.same(podOfCniArgs('K8S_POD_NAMESPACE=a=b;K8S_POD_NAME=n'), { namespace: 'a=b', name: 'n' }, 'a value keeps everything after the first =')
})
