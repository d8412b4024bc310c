// A bench measured at growing sizes: each size in turn, the curve stopping at the first size
// that does not finish, then one JSON line with the machine and every result.
import { cpus, totalmem } from 'node:os';

export async function measureCurve<R>(opts: {
  sizes: readonly number[];
  measure(size: number): Promise<R>;
  /** Prints a finished size's lines. */
  print(result: R): void;
  /** More of the JSON line (the bench's parameters). */
  params: Record<string, unknown>;
}): Promise<void> {
  const results: (R | { derivations: number; failed: string })[] = [];
  for (const size of opts.sizes) {
    try {
      const r = await opts.measure(size);
      results.push(r);
      opts.print(r);
    } catch (err) {
      const failed = err instanceof Error ? err.message.split('\n')[0]! : String(err);
      results.push({ derivations: size, failed });
      process.stdout.write(`${String(size).padStart(7)} did not finish: ${failed}\n`);
      break;
    }
  }
  const memory = `${(totalmem() / 1024 ** 3).toFixed(0)} GiB`;
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim()}, ${memory}, Node ${process.version}`;
  process.stdout.write(`${JSON.stringify({ machine, ...opts.params, results })}\n`);
}
