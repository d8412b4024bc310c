import type { BuildRow, BuildsRepo } from '../db/builds-repo.js';
import type { CachesRepo } from '../db/caches-repo.js';
import type { HubConfig } from '../config/schema.js';
import { DEFAULT_STORE_DIR } from '../nix/store-path.js';
import type { BuildJobData } from '../protocol/build-jobs.js';
import { PROTOCOL_VERSION } from '../protocol/version.js';
import type { DrvTexts } from './drv-texts.js';

/** Output name -> basename, as build records keep them, to output name -> full store path. */
const inStore = (outputs: Record<string, string>) =>
  Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, `${DEFAULT_STORE_DIR}/${v}`]));

/**
 * The payload of a build's job, from its record: what to build, its inputs' outputs (so the
 * spoke need not read their `.drv`s), the cache and its keys, the limits, and the `.drv` text
 * when the hub still holds it.
 */
export function createJobData(deps: {
  builds: BuildsRepo;
  caches: CachesRepo;
  config: Pick<HubConfig, 'buildTimeout' | 'maxSilent'>;
  drvTexts: DrvTexts;
}): (build: BuildRow) => BuildJobData {
  const { builds, caches, config, drvTexts } = deps;
  return (b) => {
    const inputOutputs: Record<string, Record<string, string>> = {};
    for (const input of builds.inputs(b.drvHash))
      inputOutputs[`${DEFAULT_STORE_DIR}/${input.drvPath}`] = inStore(input.outputs);
    const drvText = drvTexts.take(b.drvHash);
    return {
      protocol: PROTOCOL_VERSION,
      drvHash: b.drvHash,
      drvPath: `${DEFAULT_STORE_DIR}/${b.drvPath}`,
      system: b.system,
      requiredFeatures: b.requiredFeatures,
      outputs: inStore(b.outputs),
      inputOutputs,
      cacheName: b.cacheName,
      trustedPublicKeys: caches.keys(b.cacheId).map((k) => k.publicKey),
      ...(drvText === undefined ? {} : { drvText }),
      attempt: b.attempt,
      timeout: config.buildTimeout,
      maxSilent: config.maxSilent,
    };
  };
}
