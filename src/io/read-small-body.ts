import type { Readable } from 'node:stream';
import { NarhubError } from '../errors.js';

/**
 * Buffers a small request body (narinfo, log, listing…), refusing more than `max` bytes.
 * On refusal the rest of the body is drained, not the socket destroyed, so the client still
 * reads the 413 and its reason.
 */
export function readSmallBody(stream: Readable, max: number, declaredLength?: number): Promise<Buffer> {
  if (declaredLength !== undefined && declaredLength > max) {
    stream.resume();
    return Promise.reject(
      new NarhubError('BODY_TOO_LARGE', `body of ${declaredLength} bytes exceeds the limit of ${max} bytes`),
    );
  }
  // A stream whose end was already read (e.g. by readFirstLine) emits no further 'end'.
  if (stream.readableEnded) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer) => {
      length += chunk.length;
      if (length > max) {
        cleanup();
        stream.resume();
        reject(new NarhubError('BODY_TOO_LARGE', `body exceeds the limit of ${max} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, length));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new NarhubError('BAD_REQUEST', 'upload aborted before the body was complete', { cause: err }));
    };
    const onClose = () => {
      if (!stream.readableEnded) onError(new Error('closed'));
    };
    function cleanup() {
      stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    }
    stream.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}
