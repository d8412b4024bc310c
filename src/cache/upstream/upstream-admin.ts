import { NarhubError } from '../../errors.js';
import type { CacheRow } from '../../db/caches-repo.js';
import type { UpstreamRow, UpstreamsRepo } from '../../db/upstreams-repo.js';
import { normaliseUpstream, normaliseUpstreamUrl } from './upstream-spec.js';

/** An upstream as the CLI and the API show it. */
export interface UpstreamView {
  url: string;
  publicKeys: string[];
  priority: number;
  /** Declared in the config file: changed there, not with `upstream add`/`remove`. */
  declared: boolean;
}

export interface UpstreamInput {
  url: string;
  publicKeys: string[];
  priority?: number | undefined;
}

const view = (u: UpstreamRow): UpstreamView => ({
  url: u.url,
  publicKeys: u.publicKeys,
  priority: u.priority,
  declared: u.declared,
});

/** Managing a cache's upstreams: `narhub upstream …`, the API, and the config file at start. */
export function createUpstreamAdmin(deps: { upstreams: UpstreamsRepo }) {
  const { upstreams } = deps;

  function declaredHere(cache: CacheRow, url: string): UpstreamRow | undefined {
    const row = upstreams.get(cache.id, url);
    return row?.declared ? row : undefined;
  }

  return {
    /** In the order a miss asks them. */
    list(cache: CacheRow): UpstreamView[] {
      return upstreams.list(cache.id).map(view);
    },
    /** Adds an upstream, or changes the keys and priority of the one with this URL. */
    add(cache: CacheRow, input: UpstreamInput): UpstreamView {
      const upstream = normaliseUpstream(input);
      if (declaredHere(cache, upstream.url))
        throw new NarhubError(
          'UPSTREAM_DECLARED',
          `upstream ${upstream.url} of cache ${cache.name} is declared in the config file; change it there`,
        );
      return view(upstreams.add(cache.id, upstream, false));
    },
    remove(cache: CacheRow, url: string): void {
      const normalised = normaliseUpstreamUrl(url);
      const row = upstreams.get(cache.id, normalised);
      if (row === undefined)
        throw new NarhubError('UPSTREAM_NOT_FOUND', `cache ${cache.name} has no upstream ${normalised}`);
      if (row.declared)
        throw new NarhubError(
          'UPSTREAM_DECLARED',
          `upstream ${normalised} of cache ${cache.name} is declared in the config file; remove it there`,
        );
      upstreams.remove(row.id);
    },
    /** Makes the config file's upstreams of `cache` exactly these (at every start). */
    declare(cache: CacheRow, declared: UpstreamInput[]): void {
      const wanted = declared.map((d) => normaliseUpstream(d));
      const urls = new Set<string>();
      for (const u of wanted) {
        if (urls.has(u.url))
          throw new NarhubError('CONFIG_INVALID', `cache ${cache.name} declares upstream ${u.url} twice`);
        urls.add(u.url);
      }
      upstreams.replaceDeclared(cache.id, wanted);
    },
  };
}
