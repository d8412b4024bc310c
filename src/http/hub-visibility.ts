import type { TokenRow } from '../cache/tokens.js';
import type { Hub } from '../hub/hub-service.js';
import type { SpokeView } from '../hub/views.js';
import type { RequesterView } from '../hub/records.js';
import type { ProjectAccess } from './project-access.js';

/** A spoke as a caller may see it: only the builds it may read, and how many others run there. */
export interface VisibleSpoke extends SpokeView {
  /** Builds running there that the caller may not read (their ids are left out of `running`). */
  hiddenRunning: number;
}

/**
 * What of the hub's shared records a caller may see, one rule for the API and the UI: a build
 * is visible like the cache it belongs to, a requester (evaluation) like its project. Spokes and
 * the builds record that several projects share never show the ids of builds, or the projects,
 * evaluations and commits, the caller may not read.
 */
export function createHubVisibility(hub: Hub, access: ProjectAccess) {
  const canReadBuild = (token: TokenRow | undefined, drvHash: string): boolean => {
    try {
      return access.canRead(token, hub.buildCache(drvHash));
    } catch {
      return false;
    }
  };
  const canReadProject = (token: TokenRow | undefined, project: string): boolean => {
    try {
      return access.canRead(token, hub.projectCache(project));
    } catch {
      return false;
    }
  };
  return {
    canReadBuild,
    spokes(token: TokenRow | undefined, spokes: SpokeView[]): VisibleSpoke[] {
      return spokes.map((s) => {
        const running = (s.running ?? []).filter((h) => canReadBuild(token, h));
        return { ...s, running, hiddenRunning: (s.running ?? []).length - running.length };
      });
    },
    requesters(token: TokenRow | undefined, requesters: RequesterView[]): RequesterView[] {
      return requesters.filter((r) => canReadProject(token, r.project));
    },
  };
}
