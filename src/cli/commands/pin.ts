import type { Config } from '../../config/schema.js';
import { withAdminBackend } from '../admin-backend.js';
import { parseExpiry } from '../args.js';
import { parseCommand } from '../command-spec.js';
import { PIN_ADD, PIN_LIST, PIN_REMOVE } from '../specs/admin.js';
import { UsageError } from '../usage-error.js';

/** `narhub pin add|list|remove`: a pinned path keeps its whole closure through GC. */
export async function pinCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'add': {
      const { values, positionals } = parseCommand(PIN_ADD, rest);
      const expiresAt = values.expires === undefined ? null : parseExpiry(values.expires);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const pin = await admin.pinAdd(positionals[0]!, positionals[1]!, { name: values.name, expiresAt });
        out.write(values.json ? `${JSON.stringify(pin, null, 2)}\n` : `${pin.name}\t${pin.storePath}\n`);
      });
      return;
    }
    case 'list': {
      const { values, positionals } = parseCommand(PIN_LIST, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        const pins = await admin.pinList(positionals[0]!);
        if (values.json) out.write(`${JSON.stringify(pins, null, 2)}\n`);
        else
          for (const p of pins)
            out.write(`${p.name}\t${p.storePath}\t${p.expiresAt ?? 'never'}${p.expired ? '\texpired' : ''}\n`);
      });
      return;
    }
    case 'remove': {
      const { values, positionals } = parseCommand(PIN_REMOVE, rest);
      await withAdminBackend(values, loadConfig, async (admin) => {
        await admin.pinRemove(positionals[0]!, positionals[1]!);
      });
      return;
    }
    default:
      throw new UsageError(
        sub === undefined ? 'missing pin subcommand' : `unknown pin subcommand ${JSON.stringify(sub)}`,
      );
  }
}
