import { readFileSync } from 'node:fs';
import type { KeyView } from '../../cache/caches.js';
import type { Config } from '../../config/schema.js';
import { NarhubError } from '../../errors.js';
import { type AdminBackend, withAdminBackend } from '../admin-backend.js';
import { parseCommand } from '../command-spec.js';
import { KEY_IMPORT, KEY_LIST, KEY_RETIRE, KEY_ROTATE } from '../specs/admin.js';
import { UsageError } from '../usage-error.js';

function line(k: KeyView): string {
  const rewrite =
    k.rewrite === null
      ? ''
      : `\t${k.rewrite.complete ? 'rewritten' : 'rewriting'} ${k.rewrite.done}/${k.rewrite.total}`;
  return `${k.name}\t${k.state}\t${k.publicKey}${rewrite}\n`;
}

/** `narhub key list|rotate|retire|import`: a cache's signing keys and their states. */
export async function keyCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  const run = async (
    values: { server?: string; token?: string; json?: boolean },
    work: (a: AdminBackend) => Promise<KeyView | KeyView[]>,
  ) => {
    const result = await withAdminBackend(values, loadConfig, work);
    if (values.json) out.write(`${JSON.stringify(result, null, 2)}\n`);
    else for (const k of Array.isArray(result) ? result : [result]) out.write(line(k));
  };
  switch (sub) {
    case 'list': {
      const { values, positionals } = parseCommand(KEY_LIST, rest);
      return run(values, (a) => a.keyList(positionals[0]!));
    }
    case 'rotate': {
      const { values, positionals } = parseCommand(KEY_ROTATE, rest);
      return run(values, (a) => a.keyRotate(positionals[0]!));
    }
    case 'retire': {
      const { values, positionals } = parseCommand(KEY_RETIRE, rest);
      return run(values, (a) => a.keyRetire(positionals[0]!, positionals[1]!));
    }
    case 'import': {
      const { values, positionals } = parseCommand(KEY_IMPORT, rest);
      const file = values['secret-key-file'];
      if (!file) throw new UsageError('missing --secret-key-file');
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw new NarhubError('KEY_INVALID', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      return run(values, (a) => a.keyImport(positionals[0]!, text.trim()));
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing key subcommand' : `unknown key subcommand ${JSON.stringify(sub)}`,
      );
  }
}
