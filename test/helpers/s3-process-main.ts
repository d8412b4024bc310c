// The child process of s3-process.ts: s3rver (test/helpers/s3.ts) over DIR on PORT (0: a free
// one), saying where it listens and then each request as it arrives, one JSON line each on stdout.
import { startS3 } from './s3.js';

const [dir, port, bucket] = process.argv.slice(2);
if (dir === undefined || port === undefined || bucket === undefined) {
  process.stderr.write('usage: s3-process-main DIR PORT BUCKET\n');
  process.exit(2);
}
const say = (record: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(record)}\n`);
const s3 = await startS3(
  { after: () => undefined },
  { dir, port: Number(port), bucket, onRequest: (request) => say({ msg: 'request', request }) },
);
say({ msg: 'listening', url: s3.endpoint });
process.once('SIGTERM', () => void s3.stop().then(() => process.exit(0)));
