// An IPv6-only lab (`lab up --ip-family ipv6`: a ULA node network, fd00:10:244::/56 carved into
// /64s), on the file datastore and on etcd: every requirement of the network model holds in IPv6.
import t from 'tap'
import { familyLabSkip, proveFamilyLab } from '../../lab/testing/familyLab.js'

t.test('IPv6 lab, 2 nodes × 2 pods, file datastore: the whole network model holds in IPv6', { skip: familyLabSkip('file') }, (t) => proveFamilyLab(t, 'ipv6', 'file'))
t.test('IPv6 lab, 2 nodes × 2 pods, etcd on the IPv6 node network: the whole network model holds in IPv6', { skip: familyLabSkip('etcd') }, (t) => proveFamilyLab(t, 'ipv6', 'etcd'))
