import type { Readable } from 'node:stream';
import { NarhubError } from '../errors.js';

/**
 * Reads a stream up to its first `\n` and returns the bytes before it (the newline excluded).
 * Whatever came after the newline is put back (`unshift`), so `source` then yields exactly the
 * rest of the body: for a body framed as one metadata line followed by binary data.
 *
 * Rejects with BAD_REQUEST if no newline arrives within `max` bytes or before the stream ends.
 * Either way the source is left undestroyed with no listeners of ours, so an HTTP caller can
 * still drain it (`resume()`) and answer on the same connection.
 */
export function readFirstLine(source: Readable, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let have = 0;
    const cleanup = () => {
      source.off('readable', onReadable).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onReadable = () => {
      for (;;) {
        const read: unknown = source.read();
        if (read === null) return;
        const chunk = typeof read === 'string' ? Buffer.from(read) : (read as Buffer);
        const nl = chunk.indexOf(0x0a);
        if (nl < 0) {
          parts.push(chunk);
          have += chunk.length;
          if (have > max) {
            fail(tooLong(max));
            return;
          }
          continue;
        }
        if (have + nl > max) {
          fail(tooLong(max));
          return;
        }
        parts.push(chunk.subarray(0, nl));
        have += nl;
        cleanup();
        const rest = chunk.subarray(nl + 1);
        if (rest.length > 0) source.unshift(rest);
        resolve(Buffer.concat(parts, have));
        return;
      }
    };
    const onEnd = () =>
      fail(
        new NarhubError(
          'BAD_REQUEST',
          have === 0
            ? 'empty body: expected a metadata line'
            : 'the body ended before the newline that ends the metadata line',
        ),
      );
    const onError = (err: Error) =>
      fail(new NarhubError('BAD_REQUEST', 'upload aborted before the metadata line was complete', { cause: err }));
    const onClose = () => {
      if (!source.readableEnded) onError(new Error('closed'));
    };
    source.on('readable', onReadable).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

function tooLong(max: number): NarhubError {
  return new NarhubError(
    'BAD_REQUEST',
    `the metadata line is longer than ${max} bytes (or lacks its terminating newline)`,
  );
}
