/**
 * The V8 flags narhub runs with. `npm start` and the Nix package's `narhub` wrapper pass them,
 * and so do the servers the tests and benchmarks start; `test/unit/cli/node-flags.test.ts`
 * keeps those lists equal. Node refuses them in NODE_OPTIONS and V8 reads them only at
 * start-up, and a shebang cannot carry them portably (BusyBox's `env` has no `-S`), so
 * `narhub serve` started without them says so (`missingNodeFlags`) and runs anyway.
 *
 * `--initial-old-space-size=64`: streaming a NAR allocates a Buffer per socket read, and the
 * few that outlive two scavenges (waiting for a disk write or a codec) are promoted. After
 * its first full collection V8 sizes the old generation's limit from the ~13 MB a server
 * holds, so each megabyte promoted starts another incremental mark-compact: about ten a
 * second during a 1 GB upload, each pausing the event loop for up to 9 ms. With a 64 MB floor
 * three 1 GB uploads cost 2 full collections instead of 33 (10 ms of pauses instead of 176 ms),
 * and the heap still stays under 20 MB.
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** The flags of NODE_FLAGS this process was not started with (by name: any value counts). */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv): string[] {
  const name = (flag: string) => flag.split('=')[0]!.replace(/_/g, '-');
  const given = new Set(execArgv.map(name));
  return NODE_FLAGS.filter((flag) => !given.has(name(flag)));
}
