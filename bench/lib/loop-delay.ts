// Preloaded into the benchmark's narhub processes (`node --import`): once a second, the main
// thread's event-loop delay over that second goes to stderr as one JSON line, so a measurement
// can tell a blocked event loop (narhub's doing) from a starved CPU (the machine's). Costs next
// to nothing. Worker threads (zstd) run their own preload copy and stay silent.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';
import { LOOP_DELAY_TAG, type LoopDelayRecord } from './loop-delay-record.js';

/** The histogram's samples are timer intervals of this length: the delay is what exceeds it. */
const RESOLUTION_MS = 10;

if (isMainThread) {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  const beyond = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  const timer = setInterval(() => {
    const record: LoopDelayRecord = {
      t: Date.now(),
      maxMs: beyond(histogram.max),
      p99Ms: beyond(histogram.percentile(99)),
      meanMs: beyond(histogram.mean),
    };
    histogram.reset();
    process.stderr.write(`${JSON.stringify({ [LOOP_DELAY_TAG]: record })}\n`);
  }, 1000);
  timer.unref();
}
