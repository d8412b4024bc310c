/** The errno code (`ENOENT`, `ENOSPC`, …) of a filesystem error, if it has one. */
export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Whether a filesystem error says the path is not there. */
export function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  // ENOTDIR: a parent in the path is a file, so the path cannot exist.
  return code === 'ENOENT' || code === 'ENOTDIR';
}
