// The kind e2e's probe (run.sh mounts it into its check pods from a ConfigMap and runs it with the
// flatnet image's node): a TCP service that tells each client the source address it saw, and a
// client that prints what the service saw next to the address it used itself. Comparing the two
// with the client pod's IP is the "source address preserved, no NAT" check.
//
//   node probe.cjs serve PORT           answers every connection with `seen=<source address>`
//   node probe.cjs connect HOST PORT    prints `seen=<what the server saw> local=<our address>`
//   node probe.cjs self                 prints `ip=<IPv4 address of eth0>`
// Plain CommonJS, no dependencies: it runs in the image as it is. Exit 1 (and `error=...`) on failure.
'use strict'
const net = require('node:net')
const os = require('node:os')

const plain = (address) => String(address ?? '').replace(/^::ffff:/, '')

function serve(port) {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy())
    socket.end(`seen=${plain(socket.remoteAddress)}\n`)
  })
  server.on('error', (e) => {
    process.stdout.write(`error=${e.code ?? e.message}\n`)
    process.exit(1)
  })
  server.listen(port, '0.0.0.0', () => process.stdout.write(`listening port=${server.address().port}\n`))
  // A pod is deleted with SIGTERM; nothing to drain.
  process.on('SIGTERM', () => process.exit(0))
}

function connect(host, port, timeoutMs) {
  let reply = ''
  let local = ''
  const socket = net.connect({ host, port })
  socket.setTimeout(timeoutMs, () => {
    process.stdout.write(`error=ETIMEDOUT after ${timeoutMs} ms\n`)
    process.exit(1)
  })
  socket.on('connect', () => (local = plain(socket.localAddress)))
  socket.on('data', (d) => (reply += d))
  socket.on('error', (e) => {
    process.stdout.write(`error=${e.code ?? e.message}\n`)
    process.exit(1)
  })
  socket.on('end', () => {
    const m = /^seen=(\S+)$/m.exec(reply)
    if (!m) {
      process.stdout.write(`error=unexpected reply ${JSON.stringify(reply)}\n`)
      process.exit(1)
    }
    process.stdout.write(`seen=${m[1]} local=${local}\n`)
    process.exit(0)
  })
}

function self() {
  const eth0 = (os.networkInterfaces().eth0 ?? []).find((a) => a.family === 'IPv4')
  if (!eth0) {
    process.stdout.write('error=no IPv4 address on eth0\n')
    process.exit(1)
  }
  process.stdout.write(`ip=${eth0.address}\n`)
}

const [verb, ...args] = process.argv.slice(2)
const port = (text) => {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    process.stdout.write(`error=bad port ${JSON.stringify(text)}\n`)
    process.exit(2)
  }
  return n
}
if (verb === 'serve' && args.length === 1) serve(port(args[0]))
else if (verb === 'connect' && args.length === 2) connect(args[0], port(args[1]), 5000)
else if (verb === 'self' && args.length === 0) self()
else {
  process.stdout.write('usage: probe.cjs serve PORT | connect HOST PORT | self\n')
  process.exit(2)
}
