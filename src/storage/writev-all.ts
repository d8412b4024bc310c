import type { FileHandle } from 'node:fs/promises';

/** The one call of a FileHandle that `writevAll` needs (tests give it a partial writer). */
export type VectorWriter = Pick<FileHandle, 'writev'>;

/**
 * writev(2) until every byte is written, since it may write less than asked (e.g. on a nearly
 * full disk, before ENOSPC); the number of bytes written.
 */
export async function writevAll(fh: VectorWriter, buffers: Uint8Array[]): Promise<number> {
  let rest = buffers.filter((b) => b.byteLength > 0);
  let total = 0;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest);
    if (bytesWritten <= 0) throw new Error('writev wrote nothing');
    total += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.byteLength) skip -= rest.shift()!.byteLength;
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)];
  }
  return total;
}
