import { join } from 'node:path';
import { nixDatabasePath } from '../../push/nix-store-db.js';
import type { ProgressStream } from '../../push/progress.js';
import { startStoreWatcher } from '../../push/store-watcher.js';
import { parseCommand } from '../command-spec.js';
import { daemonSettings, positiveDuration } from '../push-daemon-options.js';
import { runDrainer } from '../push-daemon-runtime.js';
import { DEFAULT_WATCH_STATE_DIR, WATCH_STORE } from '../specs/auto-push.js';

/**
 * `narhub watch-store CACHE_URL [--state DIR] …`: pushes every path that becomes valid in the
 * local Nix store, with its closure, until SIGTERM. New paths are found in Nix's database
 * (`push/store-watcher.ts`) and queued in `<state>/queue`, which a drainer pushes like
 * push-daemon does; `<state>/cursor` remembers how far it got, across restarts.
 */
export async function watchStoreCommand(
  argv: string[],
  err: ProgressStream,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const { values, positionals } = parseCommand(WATCH_STORE, argv);
  const settings = daemonSettings(positionals[0]!, values, env);
  const interval = values.interval === undefined ? 10 : positiveDuration(values.interval, '--interval');
  const stateDir = values.state ?? DEFAULT_WATCH_STATE_DIR;
  const queueDir = join(stateDir, 'queue');
  const database = nixDatabasePath(env);
  return runDrainer(queueDir, settings, err, {
    start: async (drainer) => {
      const watcher = await startStoreWatcher({
        database,
        stateDir,
        queueDir,
        intervalMs: interval * 1000,
        log: (line) => err.write(`${line}\n`),
        onQueued: (paths) => {
          err.write(`watch-store: ${paths.length} new path${paths.length === 1 ? '' : 's'} queued\n`);
          drainer.wake();
        },
      });
      err.write(`watch-store: watching ${database} for new paths to push to ${positionals[0]}\n`);
      return () => watcher.close();
    },
  });
}
