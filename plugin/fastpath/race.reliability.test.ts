// plugin/race.reliability.test.ts again, every call through flatnetd's CNI socket (the fast path) instead of the
// Node fallback: the same assertions must hold on both paths (plugin/testing/testHarness.ts).
process.env.FLATNET_TEST_CNI_PATH = 'fast'
await import('../race.reliability.test.js')
