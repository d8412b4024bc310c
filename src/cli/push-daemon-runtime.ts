import { createApiClient } from '../push/api-client.js';
import { lineProgress, type ProgressStream } from '../push/progress.js';
import { ensureQueueDir, listEntries } from '../push/push-queue.js';
import { startDrainer, type DrainStats, type Drainer } from '../push/queue-drainer.js';
import { lockQueue } from '../push/queue-lock.js';
import type { DaemonSettings } from './push-daemon-options.js';

/**
 * Runs a drainer of `queueDir` until SIGTERM or SIGINT, or, with `drain`, until every entry
 * queued was tried once (exit 1 when any is left or failed). The first signal lets the batch
 * being pushed finish (its entries are then deleted); a second one exits at once, which loses
 * nothing either: an entry leaves the queue only once its closure is in the cache.
 */
export async function runDrainer(
  queueDir: string,
  settings: DaemonSettings,
  err: ProgressStream,
  around: { start?: (drainer: Drainer) => Promise<() => void>; drain?: boolean } = {},
): Promise<number> {
  ensureQueueDir(queueDir);
  const release = lockQueue(queueDir);
  const client = createApiClient(settings.location, settings.authorization);
  const log = (line: string) => err.write(`${line}\n`);
  const drainer = startDrainer({
    queueDir,
    client,
    push: {
      location: settings.location,
      jobs: settings.jobs,
      retry: { retries: settings.retries },
      progress: lineProgress(err),
      uploadUpstreamPaths: settings.uploadUpstreamPaths,
    },
    filter: settings.filter,
    log,
    maxBackoffMs: settings.maxBackoffMs,
    drain: around.drain === true,
  });
  let stopProducer: (() => void) | undefined;
  try {
    stopProducer = await around.start?.(drainer);
  } catch (e) {
    await drainer.close();
    client.close();
    release();
    throw e;
  }

  const drained = await new Promise<DrainStats | undefined>((resolve) => {
    if (around.drain) void drainer.finished.then(resolve);
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (++signals === 1) {
        log(`${signal}: finishing the batch being pushed (signal again to stop at once; nothing queued is lost)`);
        resolve(undefined);
        return;
      }
      log(`${signal}: stopping now`);
      release();
      process.exit(1);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  stopProducer?.();
  await drainer.close();
  client.close();
  release();
  if (!drained) {
    log('stopped');
    return 0;
  }
  const problems = [
    drained.failed > 0 ? `${drained.failed} moved to ${queueDir}/failed` : '',
    drained.kept > 0 ? `${drained.kept} kept after a failed push` : '',
    drained.paused ? 'the cache could not be asked what it lacks' : '',
  ].filter((p) => p !== '');
  log(
    `drained: ${drained.done} entr${drained.done === 1 ? 'y' : 'ies'} pushed` +
      (problems.length > 0
        ? `; ${problems.join(', ')}; ${(await listEntries(queueDir)).length} left in the queue`
        : ''),
  );
  return problems.length > 0 ? 1 : 0;
}
