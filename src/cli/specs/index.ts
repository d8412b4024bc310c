import type { CommandSpec } from '../command-spec.js';
import { PUSH_DAEMON, QUEUE_PUSH, WATCH_STORE } from './auto-push.js';
import { BUILD_CANCEL, BUILD_LIST, BUILD_LOG, BUILD_RESTART, BUILD_SHOW } from './build.js';
import {
  CACHE_UPDATE,
  GC,
  KEY_IMPORT,
  KEY_LIST,
  KEY_RETIRE,
  KEY_ROTATE,
  PIN_ADD,
  PIN_LIST,
  PIN_REMOVE,
} from './admin.js';
import { CACHE_CREATE, CACHE_INFO, CACHE_LIST, CACHE_STATS } from './cache.js';
import { CHECK_CONFIG } from './check-config.js';
import { EVAL, EVAL_CANCEL, EVAL_LIST, EVAL_SHOW } from './eval.js';
import { KEYGEN } from './keygen.js';
import {
  PROJECT_APPROVALS,
  PROJECT_APPROVE,
  PROJECT_CREATE,
  PROJECT_DELETE,
  PROJECT_HISTORY,
  PROJECT_LIST,
  PROJECT_NOTIFY_SECRET,
  PROJECT_SHOW,
  PROJECT_UPDATE,
} from './project.js';
import { PUSH } from './push.js';
import { REINDEX } from './reindex.js';
import { SERVE } from './serve.js';
import { SPOKE, SPOKE_LIST } from './spoke.js';
import { TOKEN_CREATE, TOKEN_LIST, TOKEN_REVOKE } from './token.js';
import { UPSTREAM_ADD, UPSTREAM_LIST, UPSTREAM_REMOVE } from './upstream.js';

/** Every command, in the order `narhub help` lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  SERVE,
  CACHE_CREATE,
  CACHE_LIST,
  CACHE_INFO,
  CACHE_STATS,
  CACHE_UPDATE,
  PIN_ADD,
  PIN_LIST,
  PIN_REMOVE,
  KEY_LIST,
  KEY_ROTATE,
  KEY_RETIRE,
  KEY_IMPORT,
  GC,
  UPSTREAM_ADD,
  UPSTREAM_LIST,
  UPSTREAM_REMOVE,
  TOKEN_CREATE,
  TOKEN_LIST,
  TOKEN_REVOKE,
  KEYGEN,
  REINDEX,
  CHECK_CONFIG,
  PUSH,
  QUEUE_PUSH,
  PUSH_DAEMON,
  WATCH_STORE,
  PROJECT_CREATE,
  PROJECT_UPDATE,
  PROJECT_LIST,
  PROJECT_SHOW,
  PROJECT_DELETE,
  PROJECT_HISTORY,
  PROJECT_APPROVALS,
  PROJECT_APPROVE,
  PROJECT_NOTIFY_SECRET,
  EVAL,
  EVAL_LIST,
  EVAL_SHOW,
  EVAL_CANCEL,
  BUILD_SHOW,
  BUILD_RESTART,
  BUILD_CANCEL,
  BUILD_LOG,
  BUILD_LIST,
  SPOKE,
  SPOKE_LIST,
] as unknown as readonly CommandSpec[];

/** The commands a word selects: `cache` gives cache create, list and info; `serve` gives serve. */
export function commandsNamed(word: string): CommandSpec[] {
  return COMMANDS.filter((c) => c.name === word || c.name.startsWith(`${word} `));
}

/**
 * The command argv names and the words after its name, or the group whose subcommand is missing
 * or unknown (`sub` is then that word, or undefined).
 */
export function findCommand(
  argv: string[],
): { spec: CommandSpec; rest: string[] } | { group: CommandSpec[]; word: string; sub: string | undefined } | undefined {
  const [word, sub, ...more] = argv;
  if (word === undefined) return undefined;
  const group = commandsNamed(word);
  if (group.length === 0) return undefined;
  // A subcommand wins over a whole command of the same word (`eval list` over `eval PROJECT`).
  const spec = group.find((c) => c.name === `${word} ${sub}`);
  if (spec) return { spec, rest: more };
  const whole = group.find((c) => c.name === word);
  if (whole) return { spec: whole, rest: argv.slice(1) };
  return { group, word, sub };
}
