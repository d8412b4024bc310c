// Preload (`node --import <this file>`, e.g. through NODE_OPTIONS) that appends to the file named
// by $NARHUB_MODULE_LOG the URL of every module the process resolves through the ES module loader
// (every `import` of ours, packages included), and at exit every CommonJS module it loaded.
import { appendFileSync } from 'node:fs';
import { createRequire, register, type ResolveHook } from 'node:module';
import { isMainThread } from 'node:worker_threads';

const log = process.env.NARHUB_MODULE_LOG;

// This file is also the hooks module: the loader runs it again on its own thread.
if (isMainThread && log) {
  register(import.meta.url);
  const require = createRequire(import.meta.url);
  process.on('exit', () =>
    appendFileSync(
      log,
      Object.keys(require.cache)
        .map((f) => `cjs:${f}\n`)
        .join(''),
    ),
  );
}

export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  const result = await nextResolve(specifier, context);
  if (log) appendFileSync(log, `${result.url}\n`);
  return result;
};
