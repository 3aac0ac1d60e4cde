// A dual-stack lab (`lab up --ip-family dual`: IPv4-primary, kind's 10.244.0.0/16 and
// fd00:10:244::/56), on the file datastore and on etcd: every requirement of the network model
// holds in both families, side by side.
import t from 'tap'
import { familyLabSkip, proveFamilyLab } from '../../lab/testing/familyLab.js'

t.test('dual-stack lab, 2 nodes × 2 pods, file datastore: the whole network model holds in IPv4 and IPv6', { skip: familyLabSkip('file') }, (t) => proveFamilyLab(t, 'dual', 'file'))
t.test('dual-stack lab, 2 nodes × 2 pods, etcd: the whole network model holds in IPv4 and IPv6', { skip: familyLabSkip('etcd') }, (t) => proveFamilyLab(t, 'dual', 'etcd'))
