import { defaultQueueDir } from '../../push/push-queue.js';
import type { ProgressStream } from '../../push/progress.js';
import { parseCommand } from '../command-spec.js';
import { daemonSettings } from '../push-daemon-options.js';
import { PUSH_DAEMON } from '../specs/auto-push.js';
import { runDrainer } from '../push-daemon-runtime.js';

/**
 * `narhub push-daemon CACHE_URL [--queue DIR] [--drain] …`: drains the queue `narhub queue-push`
 * fills, closure by closure, through the native push, until SIGTERM, or with --drain until each
 * entry was tried once. See `push/queue-drainer.ts`.
 */
export async function pushDaemonCommand(
  argv: string[],
  err: ProgressStream,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const { values, positionals } = parseCommand(PUSH_DAEMON, argv);
  const settings = daemonSettings(positionals[0]!, values, env);
  const queueDir = values.queue ?? defaultQueueDir(env);
  const drain = values.drain === true;
  return runDrainer(queueDir, settings, err, {
    drain,
    start: async () => {
      err.write(
        `push-daemon: pushing what is queued in ${queueDir} to ${positionals[0]}${drain ? ', then exiting' : ''}\n`,
      );
      return () => undefined;
    },
  });
}
