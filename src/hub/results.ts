import { parseFailure, type BuildJobResult } from '../protocol/build-jobs.js';
import type { BuildSuccess, FailureKind } from '../db/builds-repo.js';

/** A spoke's job result, checked: only well-formed fields are believed. */
export function resultOf(value: unknown): BuildSuccess & { attempt: number | null } {
  const r = (value && typeof value === 'object' ? value : {}) as Partial<BuildJobResult>;
  let outputs: Record<string, string> | null = null;
  if (r.outputs && typeof r.outputs === 'object') {
    outputs = {};
    for (const [k, v] of Object.entries(r.outputs))
      if (typeof v === 'string') outputs[k] = v.replace(/^\/nix\/store\//, '');
  }
  return {
    outputs,
    spoke: typeof r.spoke === 'string' ? r.spoke : null,
    attempt: Number.isSafeInteger(r.attempt) ? r.attempt! : null,
    startedAt: typeof r.startedAt === 'number' ? r.startedAt : null,
    finishedAt: typeof r.finishedAt === 'number' ? r.finishedAt : Date.now(),
    logPath: typeof r.logPath === 'string' ? r.logPath : null,
  };
}

export function failureOf(reason: string | undefined): { kind: FailureKind; error: string } {
  const { kind, message } = parseFailure(reason);
  return { kind, error: message };
}
