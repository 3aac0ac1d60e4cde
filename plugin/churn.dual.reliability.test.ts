// plugin/churn.reliability.test.ts again with dual-stack ranges (IPv4 first, then IPv6): the same
// assertions must hold for a pod holding one address of each family.
process.env.FLATNET_TEST_IP_FAMILY = 'dual'
// 250 pods, not 500: the IPv4 run already churns 500; this one is about a pod holding two
// families, and half the volume keeps the suite's time (it was 211 s of a 23-minute run).
process.env.FLATNET_CHURN_PODS ??= '250'
await import('./churn.reliability.test.js')
