// 2. NAR GET throughput for the big path's NAR file with curl: narhub from local disk against
// nginx serving the same file, and narhub on S3 (s3rver) against s3rver serving the object.
import { join } from 'node:path';
import { writeFile, mkdir } from 'node:fs/promises';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startS3, S3_CREDENTIALS, S3_REGION } from '../test/helpers/s3.js';
import type { BenchContext } from './lib/context.js';
import { hashPart } from './lib/nix.js';
import { execOk } from './lib/proc.js';
import { passFail, type Result } from './lib/report.js';
import { alternate, fmtBytes, fmtRatio, fmtRate, median } from './lib/stats.js';

const NAR_GET_TARGET = 1.0;

interface Download {
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
}

/** One full download with curl to /dev/null; checks the size. */
export async function curlGet(url: string, expectedBytes: number): Promise<Download> {
  const res = await execOk('curl', ['-sS', '--fail', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', url], {
    timeoutMs: 30 * 60_000,
  });
  const [size, time] = res.stdout.trim().split(' ').map(Number);
  if (size !== expectedBytes) throw new Error(`GET ${url}: ${size} bytes, expected ${expectedBytes}`);
  return { bytes: size, seconds: time!, bytesPerSecond: size / time! };
}

function row(
  id: string,
  measurement: string,
  what: string,
  refName: string,
  runs: { a: Download[]; b: Download[] },
  fileSize: number,
  targeted: boolean,
): Result {
  const rate = (ds: Download[]) => median(ds.map((d) => d.bytesPerSecond));
  const ratio = rate(runs.a) / rate(runs.b);
  return {
    id,
    measurement,
    what,
    narhub: fmtRate(rate(runs.a)),
    reference: `${refName} ${fmtRate(rate(runs.b))}`,
    ratio: fmtRatio(ratio),
    target: targeted ? `≥ ${NAR_GET_TARGET.toFixed(2)}× ${refName}` : 'none (narhub relays s3rver)',
    status: targeted ? passFail(ratio >= NAR_GET_TARGET) : 'info',
    figures: {
      fileSize,
      narhubBytesPerSec: rate(runs.a),
      referenceBytesPerSec: rate(runs.b),
      ratio,
      narhubRuns: runs.a,
      referenceRuns: runs.b,
    },
  };
}

export async function measureNarGet(ctx: BenchContext): Promise<Result[]> {
  const s = await ctx.served();
  const { path, fileSize } = s.bigNar;
  ctx.log(`nar-get: warming both servers (and the page cache) with ${fmtBytes(fileSize)}`);
  await curlGet(s.narhub.url + path, fileSize);
  await curlGet(s.nginx.url + path, fileSize);
  const n = ctx.reps(5, 3);
  ctx.log(`nar-get: ${n} downloads from each, alternately`);
  const runs = await alternate(
    n,
    () => curlGet(s.narhub.url + path, fileSize),
    () => curlGet(s.nginx.url + path, fileSize),
  );
  return [
    row(
      '2',
      'nar-get',
      `NAR GET ${fmtBytes(fileSize)} .nar.zst (NAR ${fmtBytes((await ctx.big()).narSize)}), curl, local disk`,
      'nginx',
      runs,
      fileSize,
      true,
    ),
  ];
}

export async function measureNarGetS3(ctx: BenchContext): Promise<Result[]> {
  const big = await ctx.big();
  ctx.log('nar-get-s3: starting s3rver and a narhub on it');
  const s3 = await startS3(ctx.scope, { bucket: 'narhub-bench' });
  const creds = await ctx.dir('s3-creds');
  await mkdir(creds, { recursive: true });
  const narhub = await ctx.startNarhub('s3', { config: { storage: await s3.storageConfig(creds) } });
  ctx.log('nar-get-s3: uploading the big path with nix copy');
  await ctx.nixCopyTo(narhub, `${narhub.url}/main`, [big.path]);
  const narinfo = await (await fetch(`${narhub.url}/main/${hashPart(big.path)}.narinfo`)).text();
  const url = /^URL: (\S+)$/m.exec(narinfo)?.[1];
  const fileSize = Number(/^FileSize: (\d+)$/m.exec(narinfo)?.[1]);
  if (url === undefined) throw new Error(`no URL in narinfo:\n${narinfo}`);
  // s3rver checks signatures like S3 does, so the direct GET is a presigned URL (as redirectNars gives clients).
  const client = new S3Client({
    region: S3_REGION,
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: S3_CREDENTIALS,
  });
  const direct = await getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: `main/${url}` }), {
    expiresIn: 24 * 3600,
  });
  client.destroy();
  await writeFile(join(await ctx.dir('s3-creds'), 'direct-url'), direct);
  const viaNarhub = `${narhub.url}/main/${url}`;
  ctx.log('nar-get-s3: warming');
  await curlGet(viaNarhub, fileSize);
  await curlGet(direct, fileSize);
  const n = ctx.reps(3, 2);
  ctx.log(`nar-get-s3: ${n} downloads from each, alternately`);
  const runs = await alternate(
    n,
    () => curlGet(viaNarhub, fileSize),
    () => curlGet(direct, fileSize),
  );
  await narhub.stop();
  return [
    row(
      '2 S3',
      'nar-get-s3',
      `NAR GET ${fmtBytes(fileSize)} .nar.zst, curl, S3 storage (s3rver)`,
      's3rver',
      runs,
      fileSize,
      false,
    ),
  ];
}
