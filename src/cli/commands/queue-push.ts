import { isNarhubError } from '../../errors.js';
import { pathsFromHookEnvironment } from '../../push/hook-paths.js';
import { appendToQueue, defaultQueueDir } from '../../push/push-queue.js';
import { parseCommand } from '../command-spec.js';
import { QUEUE_PUSH } from '../specs/auto-push.js';
import { UsageError } from '../usage-error.js';

/**
 * `narhub queue-push [--queue DIR] [PATH…]`: Nix's post-build-hook. Appends the paths to the push
 * queue as one durable entry and returns: Nix waits for the hook before it goes on with any
 * build, so this never touches the network; `narhub push-daemon` uploads. Without PATHs it takes
 * the hook's environment (`$OUT_PATHS`, or the outputs of `$DRV_PATH` where Nix 2.8.0 leaves
 * that empty). Nothing to queue is not an error. Returns the exit code.
 */
export function queuePushCommand(
  argv: string[],
  out: { write(text: string): unknown },
  env: NodeJS.ProcessEnv = process.env,
): number {
  const { values, positionals } = parseCommand(QUEUE_PUSH, argv);
  let paths = positionals;
  if (paths.length === 0) {
    const hook = pathsFromHookEnvironment(env);
    if (hook.skipped.length > 0)
      out.write(
        `narhub: not queued: the floating content-addressed outputs ${hook.skipped.join(', ')} of ${env.DRV_PATH} ` +
          `(no path in the .drv, and $OUT_PATHS is empty)\n`,
      );
    paths = hook.paths;
  }
  if (paths.length === 0) return 0;
  const dir = values.queue ?? defaultQueueDir(env);
  try {
    const name = appendToQueue(dir, paths);
    const count = new Set(paths).size;
    out.write(`queued ${count} path${count === 1 ? '' : 's'} in ${dir}/${name}\n`);
  } catch (e) {
    if (isNarhubError(e) && e.code === 'STORE_PATH_INVALID') throw new UsageError(e.message);
    throw e;
  }
  return 0;
}
