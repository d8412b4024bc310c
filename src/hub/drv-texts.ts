/** What the texts held at once may take, in UTF-16 code units (about bytes: `.drv`s are ASCII). */
const DEFAULT_BUDGET = 32 * 1024 * 1024;

/**
 * `.drv` texts the evaluation just uploaded, kept until their builds are enqueued so each job
 * can carry its derivation and the spoke need not fetch it. A hint, not a record: the oldest
 * go once the budget is spent, and a job without its text (after a restart, for a retry) is
 * fine, its spoke fetches the `.drv` from the cache.
 */
export class DrvTexts {
  private readonly texts = new Map<string, string>();
  private size = 0;

  constructor(private readonly budget = DEFAULT_BUDGET) {}

  remember(drvHash: string, text: string): void {
    if (text.length > this.budget) return;
    this.forget(drvHash);
    this.texts.set(drvHash, text);
    this.size += text.length;
    // Maps iterate in insertion order: the first entries are the oldest.
    for (const [hash, old] of this.texts) {
      if (this.size <= this.budget) break;
      this.texts.delete(hash);
      this.size -= old.length;
    }
  }

  /** The text, if held; it is let go, since a build is enqueued once per attempt. */
  take(drvHash: string): string | undefined {
    const text = this.texts.get(drvHash);
    this.forget(drvHash);
    return text;
  }

  private forget(drvHash: string): void {
    const text = this.texts.get(drvHash);
    if (text === undefined) return;
    this.texts.delete(drvHash);
    this.size -= text.length;
  }
}
