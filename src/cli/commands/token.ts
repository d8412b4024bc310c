import type { Config } from '../../config/schema.js';
import type { Permission } from '../../cache/tokens.js';
import { parseExpiry } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { TOKEN_CREATE, TOKEN_LIST, TOKEN_REVOKE } from '../specs/token.js';
import { withAdminBackend } from '../admin-backend.js';
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
      await withAdminBackend(values, loadConfig, async (admin) => {
        const created = await admin.tokenCreate({
          cachePattern: values.cache ?? '',
          permission: values.perm as Permission,
          project: values.project,
          name: values.name,
          expiresAt,
        });
        if (values.json) out.write(`${JSON.stringify(created, null, 2)}\n`);
        else {
          out.write(`${created.token}\n`);
          // The id is what `token revoke` takes; stdout holds the token alone, for `> file`.
          err.write(`created token ${created.id}\n`);
        }
      });
      return;
    }
    case 'list': {
      const { values } = parseCommand(TOKEN_LIST, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const rows = await admin.tokenList();
        if (values.json) out.write(`${JSON.stringify(rows, null, 2)}\n`);
        else
          for (const t of rows)
            out.write(
              `${t.id}\t${t.permission}\t${t.project ? `project ${t.project}` : t.cache}\t` +
                `${t.status}\t${t.name ?? ''}\n`,
            );
      });
      return;
    }
    case 'revoke': {
      const { values, positionals } = parseCommand(TOKEN_REVOKE, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        await admin.tokenRevoke(positionals[0]!);
        out.write(`revoked ${positionals[0]}\n`);
      });
      return;
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing token subcommand' : `unknown token subcommand ${JSON.stringify(sub)}`,
      );
  }
}
