import { isNarhubError } from '../../errors.js';
import { DEFAULT_CLIENT_ZSTD } from '../../push/api-client.js';
import { parseCacheUrl } from '../../push/cache-url.js';
import { formatBytes, lineProgress, ttyProgress, type ProgressStream } from '../../push/progress.js';
import { push } from '../../push/push.js';
import { PushFailure } from '../../push/retry.js';
import { parseInteger } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { pushAuthorization } from '../push-auth.js';
import { PUSH } from '../specs/push.js';
import { UsageError } from '../usage-error.js';

/**
 * `narhub push http://host:port/CACHE PATH…`: uploads the closures of PATHs that the cache lacks
 * through narhub's native endpoint. Progress goes to stderr (a bar on a terminal, one line per
 * path otherwise). Returns the exit code: 0 when every path is in the cache afterwards, 1 when
 * any could not be pushed (each one named, with why).
 */
export async function pushCommand(
  argv: string[],
  err: ProgressStream,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const { values, positionals } = parseCommand(PUSH, argv);
  const jobs = values.jobs === undefined ? 4 : parseInteger(values.jobs, '--jobs');
  if (jobs < 1 || jobs > 64) throw new UsageError('--jobs must be between 1 and 64');
  const retries = values.retries === undefined ? 4 : parseInteger(values.retries, '--retries');
  if (retries < 0 || retries > 20) throw new UsageError('--retries must be between 0 and 20');
  const compression = values.compression ?? 'zstd';
  if (compression !== 'zstd' && compression !== 'none') throw new UsageError('--compression must be zstd or none');
  const level = values['zstd-level'] === undefined ? 3 : parseInteger(values['zstd-level'], '--zstd-level');
  if (level < 1 || level > 19) throw new UsageError('--zstd-level must be between 1 and 19');
  const zstd = compression === 'zstd' ? { ...DEFAULT_CLIENT_ZSTD, level } : null;

  let location;
  try {
    location = parseCacheUrl(positionals[0]!);
  } catch (e) {
    throw new UsageError(isNarhubError(e) ? e.message : String(e));
  }
  const paths = positionals.slice(1);

  const authorization = pushAuthorization(values, location.host, env);

  const progress = err.isTTY ? ttyProgress(err) : lineProgress(err);
  let report;
  try {
    report = await push({
      location,
      paths,
      authorization,
      jobs,
      retry: { retries },
      progress,
      uploadUpstreamPaths: values['upload-upstream-paths'] === true,
      zstd,
    });
  } catch (e) {
    if (e instanceof PushFailure || isNarhubError(e)) {
      err.write(`narhub: ${e.message}\n`);
      return 1;
    }
    throw e;
  }

  const target = `${location.base}/${location.cache}`;
  const upstreams =
    report.fromUpstreams.length > 0 ? `; ${report.fromUpstreams.length} signed by its upstreams, not uploaded` : '';
  if (report.pushed.length === 0 && report.failed.length === 0) {
    err.write(
      upstreams === ''
        ? `nothing to push: all ${report.closure} paths are already in ${target}\n`
        : `nothing to push: ${report.present} paths already in ${target}${upstreams}\n`,
    );
    return 0;
  }
  const bytes = report.pushed.reduce((n, p) => n + p.narSize, 0);
  const failed = report.failed.length > 0 ? `; ${report.failed.length} failed` : '';
  err.write(
    `pushed ${report.pushed.length} paths (${formatBytes(bytes)}) to ${target} in ${report.seconds.toFixed(1)} s; ` +
      `${report.present} already there${upstreams}${failed}\n`,
  );
  if (report.failed.length === 0) return 0;
  err.write(`narhub: could not push ${report.failed.length} path${report.failed.length === 1 ? '' : 's'}:\n`);
  for (const f of report.failed) err.write(`  ${f.path}: ${f.reason}\n`);
  return 1;
}
