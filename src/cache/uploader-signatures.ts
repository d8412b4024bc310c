import { NarhubError } from '../errors.js';
import type { NarInfo } from '../nix/narinfo.js';
import { parsePublicKey, verifyNarInfoSig, type PublicKey } from '../nix/signing.js';
import type { CacheRow } from '../db/caches-repo.js';

/** Longest key name narhub keeps a signature under (Nix's own names are a host name and a number). */
const MAX_KEY_NAME_LENGTH = 128;

const keyNameOf = (sig: string) => sig.slice(0, sig.indexOf(':'));

const parsed = new WeakMap<string[], PublicKey[]>();
function uploaderKeys(cache: CacheRow): PublicKey[] {
  let keys = parsed.get(cache.uploaderKeys);
  if (keys === undefined) parsed.set(cache.uploaderKeys, (keys = cache.uploaderKeys.map((k) => parsePublicKey(k))));
  return keys;
}

/**
 * What a cache accepts of the signatures an upload carries under names other than its own keys'
 * (a CI's `?secret-key=`, which its users trust, as with Cachix):
 * - one under an uploader key's name must verify against the narinfo's fingerprint;
 * - one under any other name is refused if the cache says so, else kept as sent;
 * - none may have a key name longer than MAX_KEY_NAME_LENGTH;
 * - a path keeps at most `maxUploaderSignatures` of them, counting those it already has
 *   (`stored`), so a later PUT cannot add past the cap either.
 * Throws SIGNATURE_INVALID or SIGNATURE_REFUSED with the reason.
 */
export function checkUploaderSignatures(
  cache: CacheRow,
  info: NarInfo,
  ownNames: ReadonlySet<string>,
  stored: readonly string[] = [],
): void {
  const kept = new Set(stored.filter((s) => !ownNames.has(keyNameOf(s))));
  // What the path has already was accepted when it came (a re-PUT by `nix store sign` sends it back).
  const added = info.sigs.filter((s) => !ownNames.has(keyNameOf(s)) && !kept.has(s));
  const keys = uploaderKeys(cache);
  for (const sig of added) {
    const name = keyNameOf(sig);
    if (name.length > MAX_KEY_NAME_LENGTH)
      throw new NarhubError(
        'SIGNATURE_REFUSED',
        `Sig: key name ${JSON.stringify(name.slice(0, 40))}… is longer than ${MAX_KEY_NAME_LENGTH} characters`,
      );
    const named = keys.filter((k) => k.name === name);
    if (named.length > 0) {
      if (!verifyNarInfoSig(named, info, sig))
        throw new NarhubError(
          'SIGNATURE_INVALID',
          `Sig: signature by uploader key ${name} does not verify for this path`,
        );
    } else if (cache.refuseUnknownSignatures) {
      throw new NarhubError(
        'SIGNATURE_REFUSED',
        `Sig: ${name} is not a key of cache ${cache.name} nor one of its uploader keys, and it refuses others`,
      );
    }
  }
  if (added.length > 0 && kept.size + added.length > cache.maxUploaderSignatures) {
    throw new NarhubError(
      'SIGNATURE_REFUSED',
      `Sig: ${kept.size + added.length} signatures under names other than the cache's; ` +
        `cache ${cache.name} keeps at most ${cache.maxUploaderSignatures} per path`,
    );
  }
}
