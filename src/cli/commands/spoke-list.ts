import type { Config } from '../../config/schema.js';
import type { SpokeView } from '../../hub/views.js';
import { parseCommand } from '../command-spec.js';
import { clientOptions, createHubClient } from '../hub-client.js';
import { SPOKE_LIST } from '../specs/spoke.js';

/** `narhub spoke list`: the connected spokes, their systems and features, and what each builds. */
export async function spokeListCommand(
  argv: string[],
  loadConfig: () => Promise<Config>,
  out: NodeJS.WritableStream,
): Promise<void> {
  const { values } = parseCommand(SPOKE_LIST, argv);
  const client = createHubClient(await clientOptions(values, async () => (await loadConfig()).dataDir));
  const { spokes } = await client.get<{ spokes: SpokeView[] }>('/spokes');
  if (values.json) {
    out.write(`${JSON.stringify(spokes, null, 2)}\n`);
    return;
  }
  for (const s of spokes)
    out.write(
      `${s.id}\t${s.hostname}\t${s.systems.join(',')}\t${s.features.join(',') || '-'}\t` +
        `${s.running.length}/${s.maxJobs} building\tload ${s.load.toFixed(2)}` +
        `${s.compatible ? '' : '\t(other protocol version)'}\n`,
    );
}
