/** What the texts held at once may take, in UTF-16 code units (about bytes: `.drv`s are ASCII). */
const DEFAULT_BUDGET = 32 * 1024 * 1024;

/**
 * `.drv` texts the evaluation just uploaded, kept until their builds are enqueued so each job
 * can carry its derivation and the spoke need not fetch it. A hint, not a record: the oldest
 * go once the budget is spent, and a job without its text (after a restart, for a retry) is
 * fine, its spoke fetches the `.drv` from the cache.
 *
 * The age order is a queue of its own: evicting by iterating the Map from its start walked over
 * every entry deleted since V8 last compacted it, which made an evaluation of 100,000 `.drv`s
 * (past the budget) spend seconds here.
 */
export class DrvTexts {
  private readonly texts = new Map<string, { text: string; seq: number }>();
  /** [drvHash, seq] in the order remembered; an entry whose seq is not the text's any more is stale. */
  private order: [string, number][] = [];
  private head = 0;
  private seq = 0;
  private size = 0;

  constructor(private readonly budget = DEFAULT_BUDGET) {}

  remember(drvHash: string, text: string): void {
    if (text.length > this.budget) return;
    this.forget(drvHash);
    const seq = this.seq++;
    this.texts.set(drvHash, { text, seq });
    this.order.push([drvHash, seq]);
    this.size += text.length;
    while (this.size > this.budget && this.head < this.order.length) {
      const [hash, s] = this.order[this.head++]!;
      if (this.texts.get(hash)?.seq === s) this.forget(hash);
    }
    // Drop the consumed head now and then, so the queue stays as long as what it holds.
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }

  /** The text, if held; it is let go, since a build is enqueued once per attempt. */
  take(drvHash: string): string | undefined {
    const held = this.texts.get(drvHash);
    this.forget(drvHash);
    return held?.text;
  }

  private forget(drvHash: string): void {
    const held = this.texts.get(drvHash);
    if (held === undefined) return;
    this.texts.delete(drvHash);
    this.size -= held.text.length;
  }
}
