// Checking a /metrics scrape: Prometheus' own linter, and one series' value.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

/** `promtool check metrics` on the exposition; it must exit 0 (lint problems are errors too). */
export function promtool(text: string): void {
  const res = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(res.error, undefined, `promtool could not run (apt-get install prometheus): ${res.error}`);
  assert.equal(res.status, 0, `promtool check metrics:\n${res.stdout}${res.stderr}`);
}

/** The value of one series, by its exact name and labels as exposed. */
export function seriesValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
