import { Writable, finished } from 'node:stream';

/**
 * A Writable that copies every chunk to all `targets` (the same buffer, not copies), so one
 * upload can be stored and decompressed+validated in a single pass.
 *
 * - Backpressure: a write completes only once every target that asked for it has drained, so
 *   the slowest target sets the pace and nothing piles up in memory.
 * - End: on final, every target is ended, and this stream finishes once all of them have.
 * - Errors: a target that errors or closes early destroys this stream with that error; this
 *   stream being destroyed with an error (e.g. by pipeline) destroys every target with it.
 */
export function fanOut(...targets: Writable[]): Writable {
  return new FanOut(targets);
}

class FanOut extends Writable {
  private readonly done: boolean[];
  private finishedCount = 0;
  private onAllFinished: (() => void) | undefined;
  private stopWaiting: (() => void) | undefined;

  constructor(private readonly targets: Writable[]) {
    super();
    this.done = targets.map(() => false);
    targets.forEach((target, i) => {
      // Also catches premature close, which would otherwise leave a drain wait hanging forever.
      finished(target, { readable: false }, (err) => {
        if (err) {
          this.destroy(err);
          return;
        }
        this.done[i] = true;
        this.finishedCount++;
        if (this.finishedCount === this.targets.length) this.onAllFinished?.();
      });
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let waiting = 0;
    const blocked: Writable[] = [];
    const onDrain = (): void => {
      if (--waiting === 0) {
        this.stopWaiting = undefined;
        callback();
      }
    };
    for (const target of this.targets) {
      if (!target.write(chunk)) {
        waiting++;
        blocked.push(target);
        target.once('drain', onDrain);
      }
    }
    if (waiting === 0) {
      callback();
      return;
    }
    this.stopWaiting = () => {
      for (const target of blocked) target.removeListener('drain', onDrain);
    };
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.onAllFinished = () => callback();
    for (const target of this.targets) target.end();
    if (this.finishedCount === this.targets.length) callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.stopWaiting?.();
    this.stopWaiting = undefined;
    this.onAllFinished = undefined;
    // After a normal finish autoDestroy lands here too: targets may still be emptying their
    // readable side then, so only tear them down on an error or an early destroy.
    if (error !== null || !this.writableFinished) {
      this.targets.forEach((target, i) => {
        if (!target.destroyed && (error !== null || !this.done[i])) target.destroy(error ?? undefined);
      });
    }
    callback(error);
  }
}
