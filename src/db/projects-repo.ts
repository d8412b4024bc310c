import type { Database } from 'better-sqlite3';

export type ProjectAttrSet = 'checks' | 'packages' | 'nixosConfigurations';

export interface ProjectFields {
  flake: string;
  ref: string | null;
  systems: string[];
  attrs: ProjectAttrSet[];
  cacheId: number;
  priority: number;
}

export interface ProjectRow extends ProjectFields {
  id: number;
  name: string;
  cacheName: string;
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
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const SELECT = 'SELECT p.*, c.name AS cache_name FROM projects p JOIN caches c ON c.id = p.cache_id';

/** Hub projects: a flake, the systems and attribute sets to build, and the cache to fill. */
export function createProjectsRepo(db: Database) {
  const byName = db.prepare<[string], RawProject>(`${SELECT} WHERE p.name = ?`);
  const byId = db.prepare<[number], RawProject>(`${SELECT} WHERE p.id = ?`);
  const all = db.prepare<[], RawProject>(`${SELECT} ORDER BY p.name`);
  const insert =
    db.prepare(`INSERT INTO projects (name, flake, ref, systems, attrs, cache_id, priority, created_at, updated_at)
    VALUES (@name, @flake, @ref, @systems, @attrs, @cacheId, @priority, @now, @now)`);
  const update =
    db.prepare(`UPDATE projects SET flake = @flake, ref = @ref, systems = @systems, attrs = @attrs, cache_id = @cacheId,
    priority = @priority, updated_at = @now WHERE id = @id`);
  const remove = db.prepare<[number]>('DELETE FROM projects WHERE id = ?');

  const sql = (f: ProjectFields) => ({
    ...f,
    systems: JSON.stringify(f.systems),
    attrs: JSON.stringify(f.attrs),
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
    delete(id: number): void {
      remove.run(id);
    },
  };
}

export type ProjectsRepo = ReturnType<typeof createProjectsRepo>;
