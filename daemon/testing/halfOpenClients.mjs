// A hostile client of flatnetd's health server, for flatnetd.healthLoad.reliability.test.ts: it
// runs inside the test's node namespace (`ip netns exec … node halfOpenClients.mjs HOST PORT N`)
// and opens N connections that never finish a request, of four kinds in turn:
//   half-open  — a request line and part of a header, then silence
//   slowloris  — one header byte every 500 ms (never idle, never done)
//   oversized  — 64 KiB of headers
//   body       — a GET announcing 100 MB of body and sending 1 MiB of it
// It prints one JSON line {"phase":"holding",...} once every connection has been tried and the
// server had a moment to close what it refuses, then holds everything open until its stdin ends.
// Plain JavaScript run by `node`: it is a separate process inside the namespace, so its sockets
// are made there.
import { connect } from 'node:net'

const [host, portText, countText] = process.argv.slice(2)
const port = Number(portText)
const count = Number(countText)
const kinds = ['half-open', 'slowloris', 'oversized', 'body']
const stats = { phase: 'connecting', tried: 0, connected: 0, closedByServer: 0, failed: 0, open: 0 }
const sockets = new Set()
const timers = new Set()

function open(i) {
  const kind = kinds[i % kinds.length]
  const s = connect({ host, port })
  sockets.add(s)
  stats.tried++
  let connected = false
  s.on('connect', () => {
    connected = true
    stats.connected++
    stats.open++
    if (kind === 'half-open') s.write('GET /readyz HTTP/1.1\r\nHost: flatnetd\r\nX-Half: ')
    if (kind === 'slowloris') {
      s.write('GET /readyz HTTP/1.1\r\nHost: flatnetd\r\nX-Slow: ')
      const timer = setInterval(() => s.write('a'), 500)
      timers.add(timer)
      s.on('close', () => clearInterval(timer))
    }
    if (kind === 'oversized') s.write(`GET /readyz HTTP/1.1\r\nHost: flatnetd\r\nX-Big: ${'b'.repeat(64 * 1024)}`)
    if (kind === 'body') s.write(`GET /readyz HTTP/1.1\r\nHost: flatnetd\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n${'c'.repeat(1024 * 1024)}`)
  })
  s.on('data', () => {}) // answers (431, 408, or a /readyz body) are read and dropped
  s.on('error', () => {
    if (!connected) stats.failed++
  })
  s.on('close', () => {
    sockets.delete(s)
    if (connected) {
      stats.open--
      stats.closedByServer++
    }
  })
}

// In batches, so the listen backlog and the SYN queue are not what refuses connections.
for (let i = 0; i < count; i += 100) {
  for (let j = i; j < Math.min(count, i + 100); j++) open(j)
  await new Promise((r) => setTimeout(r, 20))
}
await new Promise((r) => setTimeout(r, 1000))
stats.phase = 'holding'
process.stdout.write(JSON.stringify(stats) + '\n')

process.stdin.resume()
process.stdin.on('end', () => {
  for (const t of timers) clearInterval(t)
  stats.phase = 'done'
  process.stdout.write(JSON.stringify(stats) + '\n')
  for (const s of sockets) s.destroy()
  process.exit(0)
})
