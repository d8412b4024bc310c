/**
 * A build's log on the spoke, against a real redis-server: kept in memory while small (no file),
 * spooled to its file once large, the same bytes either way, and streamed live to Redis with an
 * end-of-file entry.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { logStreamKey } from '../../../src/protocol/build-jobs.js';
import { BuildLog } from '../../../src/spoke/build-log.js';
import { startRedis } from '../../helpers/redis.js';
import { makeTempDir } from '../../helpers/tmp.js';

describe('spoke build log', () => {
  async function setup(t: Parameters<typeof makeTempDir>[0]) {
    const server = await startRedis(t);
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    t.after(() => redis.disconnect());
    const dir = await makeTempDir(t, 'narhub-build-log-');
    const failures: unknown[] = [];
    const open = async (drvHash: string) => {
      const file = join(dir, `${drvHash}.log`);
      return { file, log: await BuildLog.open(redis, drvHash, file, (err) => failures.push(err)) };
    };
    return { redis, open, failures };
  }

  const streamText = async (redis: Redis, drvHash: string) => {
    const entries = (await redis.xrange(logStreamKey(drvHash), '-', '+')) as [string, string[]][];
    const text = entries.flatMap(([, f]) => (f[0] === 'data' ? [f[1]!] : [])).join('');
    return { text, eof: entries.some(([, f]) => f[0] === 'eof') };
  };

  it('keeps a small log in memory: no file, the same text stored and streamed', async (t) => {
    const { redis, open, failures } = await setup(t);
    const { file, log } = await open('a'.repeat(32));
    const lines = Array.from({ length: 200 }, (_, i) => `line ${i} ünïcode\n`);
    for (const line of lines) log.write(line);
    await log.closeFile();
    assert.equal(existsSync(file), false, 'a small log never touches the disk');
    assert.equal((await log.contents()).toString('utf8'), lines.join(''));
    assert.equal(log.bytes, Buffer.byteLength(lines.join('')));
    await log.end();
    assert.deepEqual(await streamText(redis, 'a'.repeat(32)), { text: lines.join(''), eof: true });
    const ttl = await redis.ttl(logStreamKey('a'.repeat(32)));
    assert.ok(ttl > 0, `the ended stream expires (ttl ${ttl})`);
    await log.dispose();
    assert.deepEqual(failures, []);
  });

  it('spools a large log to its file, keeps every byte, and removes the file at the end', async (t) => {
    const { open, failures } = await setup(t);
    const { file, log } = await open('b'.repeat(32));
    const chunk = `${'x'.repeat(64 * 1024 - 1)}\n`;
    const chunks = 40; // 2.5 MiB: past what is kept in memory
    for (let i = 0; i < chunks; i++) log.write(chunk);
    await log.closeFile();
    assert.ok(existsSync(file), 'a large log is spooled to its file');
    const stored = await log.contents();
    assert.equal(stored.length, chunk.length * chunks);
    assert.ok(stored.equals(Buffer.from(chunk.repeat(chunks))));
    await log.end();
    await log.dispose();
    assert.equal(existsSync(file), false);
    assert.deepEqual(failures, []);
  });
});
