// s3rver in a process of its own, so that a test can kill it (SIGKILL) in the middle of a request
// and start it again on the same port over the same data: an S3 endpoint that crashes and comes
// back. The same s3rver, with the same additions, as test/helpers/s3.ts starts in-process.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { listeningUrl } from './listening.js';
import { jsonLines } from './server.js';
import { makeTempDir, type Cleanup } from './tmp.js';

const MAIN = fileURLToPath(new URL('./s3-process-main.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;

export interface S3Process {
  /** e.g. http://127.0.0.1:41234, the same across restarts. */
  endpoint: string;
  bucket: string;
  /** s3rver's data directory: `<dir>/<bucket>/<key>._S3rver_object`; kept across restarts. */
  dir: string;
  /** Every request so far, of every run, as `METHOD /bucket/key [query names]` (see S3Server.requests). */
  requests: string[];
  /** Resolves with the first request matching `pattern` that arrives after the call. */
  nextRequest(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGKILL: the server dies at once, mid-request, as in a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port, over the same data. */
  restart(): Promise<void>;
}

export async function startS3Process(t: Cleanup, opts: { bucket?: string } = {}): Promise<S3Process> {
  const bucket = opts.bucket ?? 'narhub-test';
  const dir = await makeTempDir(t, 'narhub-s3rver-');
  const requests: string[] = [];
  const waiters = new Set<(request: string) => void>();
  let child: ChildProcess | undefined;

  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((resolve) => c.once('exit', () => resolve()));

  async function run(port: number): Promise<string> {
    const c = spawn(process.execPath, [MAIN, dir, String(port), bucket], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let err = '';
    let partial = '';
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    return listeningUrl(c, {
      timeoutMs: START_TIMEOUT_MS,
      onOutput: (d) => {
        const lines = (partial + d).split('\n');
        partial = lines.pop() ?? '';
        for (const record of jsonLines(lines.join('\n'))) {
          if (record.msg !== 'request' || typeof record.request !== 'string') continue;
          requests.push(record.request);
          for (const waiter of waiters) waiter(record.request);
        }
      },
      failure: (why) => new Error(`s3rver ${why}\n${err}`),
    });
  }

  const kill = async () => {
    const c = child;
    if (!c) return;
    c.kill('SIGKILL');
    await exited(c);
  };
  t.after(kill);

  const endpoint = await run(0);
  const port = Number(new URL(endpoint).port);
  return {
    endpoint,
    bucket,
    dir,
    requests,
    nextRequest(pattern, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no S3 request matching ${pattern} within ${timeoutMs} ms`));
        }, timeoutMs);
        const waiter = (request: string) => {
          if (!pattern.test(request)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(request);
        };
        waiters.add(waiter);
      });
    },
    kill,
    async restart() {
      await kill();
      const again = await run(port);
      if (again !== endpoint) throw new Error(`s3rver came back at ${again}, not ${endpoint}`);
    },
  };
}
