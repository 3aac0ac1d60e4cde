// The CNI socket's frames, byte for byte: the request the native entry sends and both forms of
// the answer (with and without the call's stderr), so an entry and a daemon of different
// versions keep understanding each other.
import t from 'tap'
import { DECLINED, decodeCniRequest, decodeCniResponse, encodeCniRequest, encodeCniResponse, STDERR_FOLLOWS, WireError } from './cniWire.js'

t.test('an answer without stderr is the previous version’s frame exactly: length, exit code, document', async (t) => {
  const frame = encodeCniResponse(1, Buffer.from('{"code":4}\n'))
  t.same([...frame.subarray(0, 8)], [15, 0, 0, 0, 1, 0, 0, 0])
  t.equal(frame.subarray(8).toString(), '{"code":4}\n')
  t.same(decodeCniResponse(frame), { exitCode: 1, document: Buffer.from('{"code":4}\n') })
})

t.test('an answer with stderr flags the exit code and puts the stderr section before the document', async (t) => {
  const frame = encodeCniResponse(1, Buffer.from('{"code":5}\n'), Buffer.from('flatnet: boom\n'))
  t.equal(frame.readUInt32LE(0), frame.length - 4, 'the length covers the whole body')
  t.equal(frame.readUInt32LE(4), 1 | STDERR_FOLLOWS)
  t.equal(frame.readUInt32LE(8), 14)
  const back = decodeCniResponse(frame)
  t.equal(back.exitCode, 1)
  t.equal(back.stderr?.toString(), 'flatnet: boom\n')
  t.equal(back.document.toString(), '{"code":5}\n')
  // An empty stderr still uses the section (the entry asked for it), and success keeps code 0.
  const quiet = decodeCniResponse(encodeCniResponse(0, Buffer.alloc(0), Buffer.alloc(0)))
  t.same({ exitCode: quiet.exitCode, stderr: quiet.stderr?.length, document: quiet.document.length }, { exitCode: 0, stderr: 0, document: 0 })
})

t.test('a declined answer is never read as carrying stderr', async (t) => {
  t.equal(decodeCniResponse(encodeCniResponse(DECLINED, Buffer.alloc(0))).exitCode, DECLINED)
})

t.test('a stderr section that overruns its frame is refused', async (t) => {
  const frame = encodeCniResponse(0, Buffer.alloc(0), Buffer.from('abc'))
  frame.writeUInt32LE(99, 8)
  let thrown: unknown
  try {
    decodeCniResponse(frame)
  } catch (e) {
    thrown = e
  }
  t.ok(thrown instanceof WireError, 'a WireError')
  t.match(String(thrown), /stderr section overruns the 15-byte frame/)
})

t.test('requests round-trip: variables, stdin and the namespace state', async (t) => {
  const req = { env: { CNI_COMMAND: 'ADD', FLATNET_ENTRY_STDERR: '1' }, stdin: Buffer.from('{}'), netns: { kind: 'open-failed', code: 'ENOENT' } as const }
  const body = encodeCniRequest(req).subarray(4)
  t.same(decodeCniRequest(body), req)
  t.throws(() => decodeCniRequest(encodeCniRequest({ ...req, env: { PATH: '/bin' } }).subarray(4)), /neither CNI_\* nor FLATNET_\*/)
})
