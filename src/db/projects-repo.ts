import type { Database } from 'better-sqlite3';

export type ProjectAttrSet = 'checks' | 'packages' | 'nixosConfigurations';
/** Whose pull requests from forks are evaluated without an admin's approval. */
export type ForkPolicy = 'collaborators' | 'users' | 'everyone';

export interface ProjectFields {
  flake: string;
  ref: string | null;
  systems: string[];
  attrs: ProjectAttrSet[];
  cacheId: number;
  priority: number;
  /** OWNER/REPO on the configured forge, or null. */
  forgeRepo: string | null;
  forkPolicy: ForkPolicy;
  /** Forge logins whose fork PRs run unasked (policy `users`). */
  forkUsers: string[];
  /** Seconds between polls of the git remote, or null. */
  pollInterval: number | null;
  /** Outgoing webhook URL, or null. */
  notifyUrl: string | null;
}

export interface ProjectRow extends ProjectFields {
  id: number;
  name: string;
  cacheName: string;
  /** File holding the HMAC key of the outgoing webhook. */
  notifySecretFile: string | null;
  createdAt: number;
  updatedAt: number;
}

interface RawProject {
  id: number;
  name: string;
  flake: string;
  ref: string | null;
  systems: string;
  attrs: string;
  cache_id: number;
  cache_name: string;
  priority: number;
  forge_repo: string | null;
  fork_policy: ForkPolicy;
  fork_users: string;
  poll_interval: number | null;
  notify_url: string | null;
  notify_secret_file: string | null;
  created_at: number;
  updated_at: number;
}

const toProject = (r: RawProject): ProjectRow => ({
  id: r.id,
  name: r.name,
  flake: r.flake,
  ref: r.ref,
  systems: JSON.parse(r.systems) as string[],
  attrs: JSON.parse(r.attrs) as ProjectAttrSet[],
  cacheId: r.cache_id,
  cacheName: r.cache_name,
  priority: r.priority,
  forgeRepo: r.forge_repo,
  forkPolicy: r.fork_policy,
  forkUsers: JSON.parse(r.fork_users) as string[],
  pollInterval: r.poll_interval,
  notifyUrl: r.notify_url,
  notifySecretFile: r.notify_secret_file,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const SELECT = 'SELECT p.*, c.name AS cache_name FROM projects p JOIN caches c ON c.id = p.cache_id';

/** Hub projects: a flake, the systems and attribute sets to build, and the cache to fill. */
export function createProjectsRepo(db: Database) {
  const byName = db.prepare<[string], RawProject>(`${SELECT} WHERE p.name = ?`);
  const byId = db.prepare<[number], RawProject>(`${SELECT} WHERE p.id = ?`);
  const all = db.prepare<[], RawProject>(`${SELECT} ORDER BY p.name`);
  const insert = db.prepare(`
    INSERT INTO projects (name, flake, ref, systems, attrs, cache_id, priority, forge_repo, fork_policy, fork_users,
      poll_interval, notify_url, created_at, updated_at)
    VALUES (@name, @flake, @ref, @systems, @attrs, @cacheId, @priority, @forgeRepo, @forkPolicy, @forkUsers,
      @pollInterval, @notifyUrl, @now, @now)`);
  const update = db.prepare(`
    UPDATE projects SET flake = @flake, ref = @ref, systems = @systems, attrs = @attrs, cache_id = @cacheId,
      priority = @priority, forge_repo = @forgeRepo, fork_policy = @forkPolicy, fork_users = @forkUsers,
      poll_interval = @pollInterval, notify_url = @notifyUrl, updated_at = @now
    WHERE id = @id`);
  const byForgeRepo = db.prepare<[string], RawProject>(
    `${SELECT} WHERE p.forge_repo = ? COLLATE NOCASE ORDER BY p.name`,
  );
  const polled = db.prepare<[], RawProject>(`${SELECT} WHERE p.poll_interval IS NOT NULL ORDER BY p.name`);
  const setSecret = db.prepare('UPDATE projects SET notify_secret_file = ? WHERE id = ?');
  const remove = db.prepare<[number]>('DELETE FROM projects WHERE id = ?');

  const sql = (f: ProjectFields) => ({
    ...f,
    systems: JSON.stringify(f.systems),
    attrs: JSON.stringify(f.attrs),
    forkUsers: JSON.stringify(f.forkUsers),
    now: Date.now(),
  });

  return {
    get(name: string): ProjectRow | undefined {
      const r = byName.get(name);
      return r && toProject(r);
    },
    byId(id: number): ProjectRow | undefined {
      const r = byId.get(id);
      return r && toProject(r);
    },
    list(): ProjectRow[] {
      return all.all().map(toProject);
    },
    insert(name: string, fields: ProjectFields): ProjectRow {
      const id = Number(insert.run({ name, ...sql(fields) }).lastInsertRowid);
      return toProject(byId.get(id)!);
    },
    update(id: number, fields: ProjectFields): ProjectRow {
      update.run({ id, ...sql(fields) });
      return toProject(byId.get(id)!);
    },
    /** Projects bound to a forge repository (OWNER/REPO, compared without case, as GitHub does). */
    byForgeRepo(repo: string): ProjectRow[] {
      return byForgeRepo.all(repo).map(toProject);
    },
    /** Projects that poll their git remote. */
    polled(): ProjectRow[] {
      return polled.all().map(toProject);
    },
    setNotifySecretFile(id: number, file: string | null): void {
      setSecret.run(file, id);
    },
    delete(id: number): void {
      remove.run(id);
    },
  };
}

export type ProjectsRepo = ReturnType<typeof createProjectsRepo>;
