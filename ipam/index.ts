// The public face of ipam/: CIDR math and the pod address store. Other folders import only this.
export * from './cidr.js'
export { IpamError } from './ipamError.js'
export type { IpamErrorKind } from './ipamError.js'
export type { Attachment, Reservation } from './reservationRecord.js'
export { PodAddressStore } from './podStore.js'
export type { PodAddressStoreOptions, ReserveRequest, StoreStatus } from './podStore.js'
export * from './nodeSubnet.js'
export { runTestPoint, StoreStep } from './testPoints.js'
