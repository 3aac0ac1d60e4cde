// Runs a program the way the tests need it: an argument array (never a shell string), optional
// bytes on stdin, captured stdout/stderr, and a hard timeout so a hung child cannot hang the suite.
// The same runner the lab ships with (lab/exec.ts).
export { run, runOk, type RunOptions, type RunResult } from '../../lab/exec.js'
