import { NarhubError } from '../errors.js';
import { parseStorePath } from '../nix/store-path.js';
import type { CacheRow } from '../db/caches-repo.js';
import type { PathsRepo } from '../db/paths-repo.js';
import type { PinRow, PinsRepo } from '../db/pins-repo.js';

/** A pin name: what `pin remove` names it by. */
const PIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

export interface PinView {
  name: string;
  storePath: string;
  expiresAt: string | null;
  expired: boolean;
  createdAt: string;
}

/** Pins of a cache. A pinned path keeps its whole closure through every GC until the pin expires. */
export function createPins(deps: { pins: PinsRepo; paths: PathsRepo; now?: () => number }) {
  const { pins, paths } = deps;
  const now = deps.now ?? Date.now;
  const view = (p: PinRow): PinView => ({
    name: p.name,
    storePath: `/nix/store/${p.storePath}`,
    expiresAt: p.expiresAt === null ? null : new Date(p.expiresAt).toISOString(),
    expired: p.expiresAt !== null && p.expiresAt <= now(),
    createdAt: new Date(p.createdAt).toISOString(),
  });
  return {
    /** Pins a path the cache holds; the name defaults to the path's name. */
    add(
      cache: CacheRow,
      storePath: string,
      opts: { name?: string | undefined; expiresAt?: number | null } = {},
    ): PinView {
      const parsed = parseStorePath(storePath.startsWith('/') ? storePath : `/nix/store/${storePath}`);
      const name = opts.name ?? parsed.name;
      if (!PIN_NAME.test(name))
        throw new NarhubError(
          'BAD_REQUEST',
          `pin name ${JSON.stringify(name)} must be letters, digits, . _ + - (at most 128)`,
        );
      const present = paths.get(cache.id, parsed.hashPart);
      if (!present || present.name !== parsed.name)
        throw new NarhubError('NOT_FOUND', `${parsed.basename} is not in cache ${cache.name}`);
      const row: PinRow = {
        cacheId: cache.id,
        name,
        storePath: parsed.basename,
        expiresAt: opts.expiresAt ?? null,
        createdAt: now(),
      };
      if (!pins.insert(row)) throw new NarhubError('PIN_EXISTS', `cache ${cache.name} already has a pin named ${name}`);
      return view(row);
    },
    list(cache: CacheRow): PinView[] {
      return pins.list(cache.id).map(view);
    },
    remove(cache: CacheRow, name: string): void {
      if (!pins.remove(cache.id, name))
        throw new NarhubError('NOT_FOUND', `cache ${cache.name} has no pin named ${name}`);
    },
  };
}
