/**
 * How many cases each property test runs. `npm test` runs a short pass (the default); `npm run fuzz`
 * sets NARHUB_FUZZ_RUNS for the long one. A failure prints fast-check's seed and path: rerun it
 * with NARHUB_FUZZ_SEED and NARHUB_FUZZ_PATH to reproduce exactly.
 */
export function fuzzRuns(
  short: number,
  variable = 'NARHUB_FUZZ_RUNS',
): { numRuns: number; seed?: number; path?: string } {
  const long = Number(process.env[variable]);
  const seed = process.env.NARHUB_FUZZ_SEED;
  const path = process.env.NARHUB_FUZZ_PATH;
  return {
    numRuns: Number.isFinite(long) && long > 0 ? long : short,
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
  };
}
