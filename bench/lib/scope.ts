// Cleanup for the whole run: everything started registers how to undo itself, undone in reverse.

export class Scope {
  private readonly fns: (() => unknown)[] = [];

  /** Registers `fn` to run at `close()`, before everything registered earlier. */
  after(fn: () => unknown): void {
    this.fns.push(fn);
  }

  async close(): Promise<void> {
    for (const fn of this.fns.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`bench: cleanup failed: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  }
}
