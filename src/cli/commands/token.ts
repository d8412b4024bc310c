import type { Config } from '../../config/schema.js';
import type { Permission } from '../../cache/tokens.js';
import { parseExpiry } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { TOKEN_CREATE, TOKEN_LIST, TOKEN_REVOKE } from '../specs/token.js';
import { openRuntime } from '../runtime.js';
import { UsageError } from '../usage-error.js';

const PERMISSIONS = new Set<Permission>(['read', 'write', 'admin', 'trigger']);

/** `narhub token …`: tokens are shown once on creation; only their hashes are kept. */
export async function tokenCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create': {
      const { values } = parseCommand(TOKEN_CREATE, rest);
      if (!PERMISSIONS.has(values.perm as Permission))
        throw new UsageError(`--perm must be read, write, admin or trigger, not ${JSON.stringify(values.perm)}`);
      if (values.perm === 'trigger') {
        if (!values.project) throw new UsageError('--perm trigger needs --project NAME');
        if (values.cache !== undefined) throw new UsageError('--perm trigger takes --project, not --cache');
      } else {
        if (!values.cache) throw new UsageError('missing --cache');
        if (values.project !== undefined) throw new UsageError('--project is only for --perm trigger');
      }
      const expiresAt = values.expires === undefined ? undefined : parseExpiry(values.expires);
      const runtime = await openRuntime(await loadConfig());
      try {
        const { token, row } = runtime.service.tokens.create({
          cachePattern: values.cache ?? '',
          permission: values.perm as Permission,
          project: values.project,
          name: values.name,
          expiresAt,
        });
        if (values.json) out.write(`${JSON.stringify({ ...view(row), token }, null, 2)}\n`);
        else {
          out.write(`${token}\n`);
          // The id is what `token revoke` takes; stdout holds the token alone, for `> file`.
          err.write(`created token ${row.id}\n`);
        }
      } finally {
        await runtime.close();
      }
      return;
    }
    case 'list': {
      const { values } = parseCommand(TOKEN_LIST, rest);
      const runtime = await openRuntime(await loadConfig());
      try {
        const rows = runtime.service.tokens.list().map(view);
        if (values.json) out.write(`${JSON.stringify(rows, null, 2)}\n`);
        else
          for (const t of rows)
            out.write(
              `${t.id}\t${t.permission}\t${t.project ? `project ${t.project}` : t.cache}\t${t.status}\t${t.name ?? ''}\n`,
            );
      } finally {
        await runtime.close();
      }
      return;
    }
    case 'revoke': {
      const { positionals } = parseCommand(TOKEN_REVOKE, rest);
      const runtime = await openRuntime(await loadConfig());
      try {
        runtime.service.tokens.revoke(positionals[0]!);
        out.write(`revoked ${positionals[0]}\n`);
      } finally {
        await runtime.close();
      }
      return;
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing token subcommand' : `unknown token subcommand ${JSON.stringify(sub)}`,
      );
  }
}

function view(row: {
  id: string;
  name: string | null;
  cachePattern: string;
  permission: Permission;
  project: string | null;
  expiresAt: number | null;
  revokedAt: number | null;
  createdAt: number;
  lastUsedAt: number | null;
}) {
  const now = Date.now();
  const status =
    row.revokedAt !== null ? 'revoked' : row.expiresAt !== null && row.expiresAt <= now ? 'expired' : 'active';
  // A stored time no Date can show (an older narhub took any expiry) is listed, not fatal.
  const iso = (t: number | null) =>
    t === null
      ? null
      : Number.isNaN(new Date(t).getTime())
        ? `${t} ms since 1970 (out of range)`
        : new Date(t).toISOString();
  return {
    id: row.id,
    name: row.name,
    cache: row.cachePattern,
    project: row.project,
    permission: row.permission,
    status,
    createdAt: iso(row.createdAt),
    expiresAt: iso(row.expiresAt),
    revokedAt: iso(row.revokedAt),
    lastUsedAt: iso(row.lastUsedAt),
  };
}
