// What flatnetd's reconcilers read: the cluster view (nodes, this node's subnet) and the cluster
// objects, as one object — the runner hands one view to every reconciler. A subclass, so every
// reconciler written against ClusterView reads it unchanged.
import type { INamespace, IPod, IService } from 'kubernetes-models/v1'
import type { IEndpointSlice } from 'kubernetes-models/discovery.k8s.io/v1'
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1'
import { ClusterView, type ClusterViewOptions } from '../clusterView.js'
import type { InputKind } from '../reconcile/contract.js'
import type { ObjectView } from './objectView.js'
import { OBJECT_INPUT_KINDS, type ObjectInputKind, type ObjectInputs } from './view.js'

const isObjectInput = (kind: InputKind): kind is ObjectInputKind => (OBJECT_INPUT_KINDS as readonly InputKind[]).includes(kind)

export interface DaemonViewOptions extends ClusterViewOptions {
  objects: ObjectView
}

export class DaemonView extends ClusterView implements ObjectInputs {
  readonly objects: ObjectView

  constructor(opts: DaemonViewOptions) {
    super(opts)
    this.objects = opts.objects
  }

  override synced(kind: InputKind): boolean {
    return isObjectInput(kind) ? this.objects.synced(kind) : super.synced(kind)
  }

  namespaces(): readonly INamespace[] | undefined {
    return this.objects.namespaces()
  }

  pods(): readonly IPod[] | undefined {
    return this.objects.pods()
  }

  networkPolicies(): readonly INetworkPolicy[] | undefined {
    return this.objects.networkPolicies()
  }

  services(): readonly IService[] | undefined {
    return this.objects.services()
  }

  endpointSlices(): readonly IEndpointSlice[] | undefined {
    return this.objects.endpointSlices()
  }
}
