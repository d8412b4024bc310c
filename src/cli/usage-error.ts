import type { CommandSpec } from './command-spec.js';

/**
 * A mistake in how a command was called: the message names the one thing wrong, and the usage of
 * that command alone (`spec`, or the one main.ts was running) goes to stderr; the exit code is 2.
 */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly spec?: CommandSpec,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}
