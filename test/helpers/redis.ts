// Starts a real redis-server of the test's own on a free loopback port.
import { spawn } from 'node:child_process';
import { freePort } from './ports.js';
import { makeTempDir, type Cleanup } from './tmp.js';

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Fails (never skips) when redis-server is not installed: the hub's tests need the real thing.
 * `port`: start on this port (a Redis coming back where it was); else a free one. Nothing is
 * persisted, so a Redis started again comes back empty, as one without persistence does.
 */
export async function startRedis(t: Cleanup, opts: { port?: number } = {}): Promise<TestRedis> {
  const dir = await makeTempDir(t, 'narhub-redis-');
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const ready = await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot start redis-server (apt-get install -y redis-server): ${err.message}`));
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
      child.stdout.on('data', () => {
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
    });
    if (!ready) {
      child.kill('SIGKILL');
      if (attempt < 3 && opts.port === undefined && /Address already in use/.test(output)) continue;
      throw new Error(`redis-server did not start:\n${output}`);
    }
    const stop = async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    };
    t.after(stop);
    return { url: `redis://127.0.0.1:${port}`, port, stop };
  }
}
