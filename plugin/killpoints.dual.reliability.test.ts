// plugin/killpoints.reliability.test.ts again with dual-stack ranges (IPv4 first, then IPv6): the same
// assertions must hold for a pod holding one address of each family.
process.env.FLATNET_TEST_IP_FAMILY = 'dual'
await import('./killpoints.reliability.test.js')
