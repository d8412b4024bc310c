import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from 'better-sqlite3';
import type { Logger } from 'pino';
import { NarhubError } from '../errors.js';
import type { ProjectRow, ProjectsRepo } from '../db/projects-repo.js';
import type { EvaluationView } from '../hub/views.js';

/** What an outgoing webhook carries. */
export interface NotificationBody {
  event: 'evaluation.finished' | 'attribute.failing' | 'attribute.fixed';
  project: string;
  evaluation: { id: number; status: string; jobset: string | null; commit: string | null; url: string };
  attribute?: { name: string; status: string; url: string };
}

const RECENT_MS = 60 * 60_000;
const GIVE_UP_MS = 24 * 3600_000;
const TIMEOUT_MS = 10_000;

/** `sha256=<hex>` of the body under the project's key, as GitHub signs its webhooks. */
function signNotification(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Whether a job's outcome passes (null: not decided, or not an outcome of a build). */
const passing = (status: string): boolean | null =>
  status === 'succeeded' || status === 'cached'
    ? true
    : ['failed', 'dependency-failed', 'eval-failed'].includes(status)
      ? false
      : null;

/**
 * Outgoing webhooks, one per project (`notifyUrl`): an evaluation's end, and each attribute
 * going from passing to failing (`attribute.failing`) and back (`attribute.fixed`) on its jobset.
 * Bodies are JSON signed with HMAC-SHA256 (`X-Narhub-Signature-256`) under a key the server
 * generates into a file (never the database) and shows once. Deliveries wait in the
 * `notifications` table and are retried with backoff for a day.
 */
export function createNotifier(o: {
  db: Database;
  projects: ProjectsRepo;
  evaluation(id: number): Promise<EvaluationView>;
  keysDir: string;
  uiBase: () => string;
  logger: Logger;
}) {
  const { db, projects, logger } = o;
  // Every evaluation that ended is read once: attribute states are kept for all projects, so the
  // first notification after a URL is set already knows what changed.
  const ended = db.prepare<[number], { id: number; project_id: number; finished_at: number }>(
    `SELECT e.id, e.project_id, e.finished_at FROM evaluations e
     WHERE e.notified_at IS NULL AND e.finished_at IS NOT NULL AND e.finished_at > ? ORDER BY e.id LIMIT 20`,
  );
  const markNotified = db.prepare('UPDATE evaluations SET notified_at = ? WHERE id = ?');
  const prevState = db.prepare<[number, string, string], { passing: number }>(
    'SELECT passing FROM attr_states WHERE project_id = ? AND jobset = ? AND attr = ?',
  );
  const setState =
    db.prepare(`INSERT INTO attr_states (project_id, jobset, attr, passing, eval_id) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (project_id, jobset, attr) DO UPDATE SET passing = excluded.passing, eval_id = excluded.eval_id
    WHERE excluded.eval_id > attr_states.eval_id`);
  const enqueue = db.prepare(
    'INSERT INTO notifications (project_id, event, body, next_try_at, created_at) VALUES (?, ?, ?, ?, ?)',
  );
  const due = db.prepare<
    [number],
    { id: number; project_id: number; event: string; body: string; tries: number; created_at: number }
  >('SELECT * FROM notifications WHERE next_try_at <= ? ORDER BY id LIMIT 20');
  const remove = db.prepare('DELETE FROM notifications WHERE id = ?');
  const retry = db.prepare('UPDATE notifications SET tries = tries + 1, next_try_at = ? WHERE id = ?');
  let timer: NodeJS.Timeout | undefined;
  let busy = false;

  function secretOf(p: ProjectRow): string | undefined {
    if (!p.notifySecretFile) return undefined;
    try {
      return readFileSync(p.notifySecretFile, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** Queues the notifications of evaluations that ended, and records attribute states. */
  async function collect(): Promise<void> {
    for (const row of ended.all(Date.now() - RECENT_MS)) {
      const p = projects.byId(row.project_id);
      const e = await o.evaluation(row.id).catch(() => undefined);
      if (!p || !e) continue;
      const url = `${o.uiBase()}/ui/evaluations/${e.id}`;
      const base = {
        project: p.name,
        evaluation: { id: e.id, status: e.status, jobset: e.jobset, commit: e.commit, url },
      };
      const now = Date.now();
      // Only evaluations that ended after the URL was set (or changed) are sent.
      const send = p.notifyUrl !== null && row.finished_at > p.updatedAt;
      db.transaction(() => {
        if (send)
          enqueue.run(p.id, 'evaluation.finished', JSON.stringify({ event: 'evaluation.finished', ...base }), now, now);
        if (e.jobset !== null && e.status !== 'cancelled')
          for (const j of e.jobs ?? []) {
            const pass = passing(j.status);
            if (pass === null) continue;
            const before = prevState.get(p.id, e.jobset, j.attr);
            setState.run(p.id, e.jobset, j.attr, pass ? 1 : 0, e.id);
            if (!send || !before || before.passing === (pass ? 1 : 0)) continue;
            const event = pass ? 'attribute.fixed' : 'attribute.failing';
            const attrUrl = j.drvHash ? `${o.uiBase()}/ui/builds/${j.drvHash}` : `${url}#${encodeURIComponent(j.attr)}`;
            const body: NotificationBody = {
              event,
              ...base,
              attribute: { name: j.attr, status: j.status, url: attrUrl },
            };
            enqueue.run(p.id, event, JSON.stringify(body), now, now);
          }
        markNotified.run(now, e.id);
      })();
    }
  }

  async function deliver(): Promise<void> {
    for (const n of due.all(Date.now())) {
      const p = projects.byId(n.project_id);
      const secret = p && secretOf(p);
      if (!p?.notifyUrl || !secret || Date.now() - n.created_at > GIVE_UP_MS) {
        remove.run(n.id);
        continue;
      }
      try {
        const res = await fetch(p.notifyUrl, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'narhub',
            'x-narhub-event': n.event,
            'x-narhub-delivery': String(n.id),
            'x-narhub-signature-256': signNotification(secret, n.body),
          },
          body: n.body,
          redirect: 'manual',
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
        await res.body?.cancel();
        if (res.status >= 200 && res.status < 300) {
          remove.run(n.id);
          continue;
        }
        throw new Error(`answered ${res.status}`);
      } catch (err) {
        const delay = Math.min(3600_000, 2000 * 2 ** Math.min(n.tries, 20));
        retry.run(Date.now() + delay, n.id);
        logger.warn({ err: (err as Error).message, project: p.name, retryInMs: delay }, 'notification failed');
      }
    }
  }

  return {
    /** A new HMAC key for a project's notifications, written to a file (mode 0600); returned once. */
    rotateSecret(projectName: string): string {
      const p = projects.get(projectName);
      if (!p) throw new NarhubError('NOT_FOUND', `no project named ${projectName}`);
      const secret = randomBytes(32).toString('base64url');
      mkdirSync(o.keysDir, { recursive: true, mode: 0o700 });
      const file = join(o.keysDir, `notify-${p.name}.secret`);
      writeFileSync(`${file}.tmp`, `${secret}\n`, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
      projects.setNotifySecretFile(p.id, file);
      return secret;
    },
    /** One round: queue what ended, deliver what is due (tests call it; `start` runs it every second). */
    async tick(): Promise<void> {
      if (busy) return;
      busy = true;
      try {
        await collect();
        await deliver();
      } finally {
        busy = false;
      }
    },
    start(everyMs = 1000): void {
      timer = setInterval(() => {
        this.tick().catch((err: unknown) => logger.warn({ err }, 'notifier failed'));
      }, everyMs);
      timer.unref();
    },
    close(): void {
      if (timer) clearInterval(timer);
    },
  };
}
