import { NarhubError } from '../errors.js';
import type { PathInfo } from '../nix/path-info.js';
import { parseStorePath } from '../nix/store-path.js';
import { formatSize } from '../units.js';
import { formatBytes } from './progress.js';

/**
 * Which new store paths the automatic push takes. Patterns are shell globs (`*`, `?`, `[…]`,
 * `[!…]`) matched against a path's name, the part after the hash: `hello-2.12.1`, `foo.drv`.
 * A path is taken when it matches some `include` (or none are given) and no `exclude`.
 */
export interface PathFilterOptions {
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  /** Only paths Nix built on this machine (see `builtHere`). */
  onlyBuiltHere?: boolean;
  /** Never upload a NAR larger than this many bytes (`--max-size`). */
  maxNarSize?: number | undefined;
}

/** A glob as an anchored regular expression; a `[` without its `]` is a literal. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      const negated = body.startsWith('!');
      if (negated) body = body.slice(1);
      re += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Patterns are names, never paths: a `/` can never match, so it is refused rather than ignored. */
function compile(patterns: readonly string[], flag: string): RegExp[] {
  return patterns.map((p) => {
    if (p === '' || p.includes('/'))
      throw new NarhubError(
        'BAD_REQUEST',
        `${flag} ${JSON.stringify(p)}: a pattern matches a store path's name (e.g. 'hello-*' or '*.drv'), not a path`,
      );
    return globToRegExp(p);
  });
}

/**
 * Whether Nix built this path here: its database marks exactly those `ultimate` (Nix: "the path
 * was built locally"). Substituted paths and paths copied in (`nix copy --from`, `nix-store
 * --import`) are not, nor are paths added here without a build (`nix store add-path`, the `.drv`
 * files of an evaluation). Signatures cannot tell the rest apart: Nix 2.8 drops a
 * content-addressed path's signatures when it substitutes it, so a `-source` tarball from
 * cache.nixos.org looks just like a local `nix store add-path`.
 */
export function builtHere(info: Pick<PathInfo, 'ultimate'>): boolean {
  return info.ultimate === true;
}

export interface PathFilter {
  /** Why the path's name keeps it out, or undefined when the name lets it through. */
  nameRejects(path: string): string | undefined;
  /** Whether the --include patterns (if any) name the path, whatever the --exclude ones say. */
  included(path: string): boolean;
  /** Why the path's metadata keeps it out (only with `onlyBuiltHere`), or undefined. */
  infoRejects(info: PathInfo): string | undefined;
  /** True when `infoRejects` needs the metadata of the paths the names let through. */
  needsInfo: boolean;
  /**
   * Why a path must not be uploaded whatever needs it (its NAR is over `maxNarSize`), or
   * undefined. Unlike the others, this holds for every path of a closure the cache lacks.
   */
  uploadRejects(info: Pick<PathInfo, 'narSize'>): string | undefined;
}

export function createPathFilter(options: PathFilterOptions = {}): PathFilter {
  const include = compile(options.include ?? [], '--include');
  const exclude = compile(options.exclude ?? [], '--exclude');
  const onlyBuiltHere = options.onlyBuiltHere === true;
  const included = (path: string) => {
    const { name } = parseStorePath(path);
    return include.length === 0 || include.some((re) => re.test(name));
  };
  return {
    nameRejects(path) {
      if (!included(path)) return 'matches no --include pattern';
      const { name } = parseStorePath(path);
      const hit = exclude.findIndex((re) => re.test(name));
      return hit >= 0 ? `matches --exclude ${JSON.stringify(options.exclude![hit])}` : undefined;
    },
    included,
    infoRejects(info) {
      if (!onlyBuiltHere || builtHere(info)) return undefined;
      return 'not built here (substituted, copied or added: --only-built-here)';
    },
    needsInfo: onlyBuiltHere,
    uploadRejects(info) {
      const max = options.maxNarSize;
      if (max === undefined || info.narSize <= max) return undefined;
      return `its NAR is ${formatBytes(info.narSize)}, over --max-size ${formatSize(max)}`;
    },
  };
}
