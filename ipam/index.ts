// The public face of ipam/: CIDR math and the pod address store. Other folders import only this.
export * from './cidr.js'
