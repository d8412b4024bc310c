// The web UI's pages, as server-rendered JSX (preact): every value is escaped by construction,
// and no page depends on JavaScript to be read.
import type { ComponentChildren, VNode } from 'preact';
import type { ApprovalView } from '../../forge/forge-service.js';
import type { BrowsedPath, CacheSummary, PathDetails } from '../../cache/cache-browser.js';
import type { BuildView, EvaluationView, JobView, ProjectView, QueueView } from '../../hub/views.js';
import type { VisibleSpoke } from '../hub-visibility.js';
import type { AttrTransition, RequesterView } from '../../hub/records.js';

export interface Viewer {
  /** The session's token label (never the token), or null when nobody is logged in. */
  who: string | null;
  csrf: string;
  /** Whether narhub runs a build hub: without one, the pages of projects, spokes and queues do not exist. */
  hub: boolean;
}

const since = (iso: string | null) => (iso === null ? '' : iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'));
const duration = (ms: number | null): string => {
  if (ms === null) return '';
  const s = Math.round(ms / 1000);
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
};
const bytes = (n: number) =>
  n < 1024
    ? `${n} B`
    : n < 1024 ** 2
      ? `${(n / 1024).toFixed(1)} KiB`
      : n < 1024 ** 3
        ? `${(n / 1024 ** 2).toFixed(1)} MiB`
        : `${(n / 1024 ** 3).toFixed(2)} GiB`;
const short = (sha: string | null) => (sha === null ? '' : sha.slice(0, 12));

function State({ s }: { s: string }) {
  return <span class={`state s-${s}`}>{s}</span>;
}

/** A POST button with the CSRF token: the only way the UI changes anything. */
function Action({
  action,
  label,
  csrf,
  extra,
}: {
  action: string;
  label: string;
  csrf: string;
  extra?: Record<string, string>;
}) {
  return (
    <form class="inline" method="post" action={action}>
      <input type="hidden" name="_csrf" value={csrf} />
      {Object.entries(extra ?? {}).map(([k, v]) => (
        <input type="hidden" name={k} value={v} />
      ))}
      <button type="submit">{label}</button>
    </form>
  );
}

function Layout({
  title,
  viewer,
  children,
  live,
}: {
  title: string;
  viewer: Viewer;
  children: ComponentChildren;
  live?: string;
}) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${title} · narhub`}</title>
        <link rel="stylesheet" href="/ui/assets/style.css" />
        <script src="/ui/assets/live.js" defer />
      </head>
      <body>
        <header>
          <a class="brand" href="/ui/">
            narhub
          </a>
          <nav>
            {viewer.hub ? (
              <>
                <a href="/ui/">Projects</a> · <a href="/ui/spokes">Spokes</a> · <a href="/ui/queues">Queues</a> ·{' '}
              </>
            ) : null}
            <a href="/ui/caches">Caches</a>
          </nav>
          {viewer.who === null ? (
            <a class="login" href="/ui/login">
              Log in
            </a>
          ) : (
            <form method="post" action="/ui/logout">
              <span class="muted">{viewer.who} </span>
              <input type="hidden" name="_csrf" value={viewer.csrf} />
              <button type="submit">Log out</button>
            </form>
          )}
        </header>
        <main data-live-page={live}>
          <h1>{title}</h1>
          {children}
        </main>
      </body>
    </html>
  );
}

export function LoginPage({ viewer, error }: { viewer: Viewer; error?: string }) {
  return (
    <Layout title="Log in" viewer={viewer}>
      <p>Paste a narhub token. The browser keeps a session cookie; the token itself is not stored.</p>
      {error ? <p class="s-failed">{error}</p> : null}
      <form method="post" action="/ui/login">
        <input type="hidden" name="_csrf" value={viewer.csrf} />
        <label>
          Token <input type="password" name="token" autocomplete="off" required size={60} />
        </label>{' '}
        <button type="submit">Log in</button>
      </form>
    </Layout>
  );
}

export function IndexPage({
  viewer,
  projects,
}: {
  viewer: Viewer;
  projects: { project: ProjectView; latest: EvaluationView | null }[];
}) {
  return (
    <Layout title="Projects" viewer={viewer}>
      {projects.length === 0 ? (
        <p class="muted">No project to show{viewer.who === null ? ' (log in to see private ones)' : ''}.</p>
      ) : null}
      <table>
        <thead>
          <tr>
            <th>Project</th>
            <th>Flake</th>
            <th>Latest evaluation</th>
            <th>State</th>
            <th>Commit</th>
          </tr>
        </thead>
        <tbody>
          {projects.map(({ project: p, latest }) => (
            <tr>
              <td>
                <a href={`/ui/projects/${p.name}`}>{p.name}</a>
              </td>
              <td>
                <code>{p.flake}</code>
                {p.github ? <span class="muted"> · {p.github}</span> : null}
              </td>
              <td>
                {latest ? (
                  <a href={`/ui/evaluations/${latest.id}`}>
                    #{latest.id} {latest.jobset ?? ''}
                  </a>
                ) : (
                  <span class="muted">none yet</span>
                )}
              </td>
              <td>{latest ? <State s={latest.status} /> : null}</td>
              <td>
                <code>{short(latest?.commit ?? null)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

export function ProjectPage(p: {
  viewer: Viewer;
  project: ProjectView;
  jobsets: { jobset: string; latest: EvaluationView }[];
  attrs: AttrTransition[];
  mainJobset: string;
  approvals: ApprovalView[];
  canAdmin: boolean;
  canTrigger: boolean;
}) {
  const { project, viewer } = p;
  return (
    <Layout title={`Project ${project.name}`} viewer={viewer}>
      <dl>
        <dt>Flake</dt>
        <dd>
          <code>{project.flake}</code>
          {project.ref ? ` (branch ${project.ref})` : ''}
        </dd>
        <dt>Systems</dt>
        <dd>{project.systems.join(', ')}</dd>
        <dt>Cache</dt>
        <dd>
          <a href={`/ui/caches/${project.cache}`}>{project.cache}</a>
        </dd>
        {project.github ? (
          <>
            <dt>GitHub</dt>
            <dd>
              {project.github} (forks: {project.forkPolicy})
            </dd>
          </>
        ) : null}
      </dl>
      {p.canTrigger ? (
        <Action action={`/ui/projects/${project.name}/trigger`} label="Evaluate now" csrf={viewer.csrf} />
      ) : null}
      <h2>Branches and pull requests</h2>
      <table>
        <thead>
          <tr>
            <th>Jobset</th>
            <th>Latest</th>
            <th>State</th>
            <th>Commit</th>
            <th>Trigger</th>
            <th>Started</th>
          </tr>
        </thead>
        <tbody>
          {p.jobsets.map(({ jobset, latest }) => (
            <tr>
              <td>{jobset}</td>
              <td>
                <a href={`/ui/evaluations/${latest.id}`}>#{latest.id}</a>
              </td>
              <td>
                <State s={latest.status} />
              </td>
              <td>
                <code>{short(latest.commit)}</code>
              </td>
              <td>
                {latest.trigger}
                {latest.triggeredBy ? ` by ${latest.triggeredBy}` : ''}
              </td>
              <td>{since(latest.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {p.approvals.length > 0 ? (
        <>
          <h2>Pull requests from forks</h2>
          <table>
            <thead>
              <tr>
                <th>PR</th>
                <th>Author</th>
                <th>Head</th>
                <th>State</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {p.approvals.map((a) => (
                <tr>
                  <td>
                    #{a.pr} {a.title}
                  </td>
                  <td>{a.author}</td>
                  <td>
                    <code>
                      {a.headRepo}@{short(a.headSha)}
                    </code>
                  </td>
                  <td>
                    <State s={a.status} />
                  </td>
                  <td>
                    {p.canAdmin && a.status === 'waiting' ? (
                      <Action
                        action={`/ui/projects/${project.name}/approve`}
                        label="Approve and evaluate"
                        csrf={viewer.csrf}
                        extra={{ pr: String(a.pr) }}
                      />
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
      <h2>Attributes on {p.mainJobset}</h2>
      <table>
        <thead>
          <tr>
            <th>Attribute</th>
            <th>State</th>
            <th>Since</th>
            <th>Commit</th>
          </tr>
        </thead>
        <tbody>
          {p.attrs.map((a) => (
            <tr>
              <td>
                <code>{a.attr}</code>
              </td>
              <td>
                <State s={a.state} />
              </td>
              <td>
                {a.since ? <a href={`/ui/evaluations/${a.since.evaluation}`}>#{a.since.evaluation}</a> : null}{' '}
                <span class="muted">{a.since ? since(a.since.createdAt) : ''}</span>
              </td>
              <td>
                <code>{short(a.since?.commit ?? null)}</code>
                {a.state === 'failing' ? (
                  <span class="muted"> broke it</span>
                ) : a.state === 'passing' && a.since ? (
                  <span class="muted"> fixed or added it</span>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

function JobRow({ j }: { j: JobView }) {
  const reason =
    j.error ?? (j.status === 'dependency-failed' ? `the build of ${j.failedDependency ?? 'an input'} failed` : null);
  return (
    <tr id={j.attr}>
      <td>
        <code>{j.attr}</code>
      </td>
      <td>
        <State s={j.status} />
        {j.fromFailureCache ? <span class="muted"> (failed before, not built again)</span> : null}
      </td>
      <td>{duration(j.durationMs)}</td>
      <td>{j.spoke ?? ''}</td>
      <td>{j.attempt ?? ''}</td>
      <td>
        {j.drvHash ? <a href={`/ui/builds/${j.drvHash}`}>build</a> : null}
        {j.status === 'dependency-failed' && j.failedDependency ? (
          <>
            {' '}
            · <a href={`/ui/builds/${j.failedDependency.replace('/nix/store/', '').slice(0, 32)}`}>failed dependency</a>
          </>
        ) : null}
        {reason ? (
          <details>
            <summary>why</summary>
            <pre>{reason}</pre>
          </details>
        ) : j.waitingFor ? (
          <span class="muted"> {j.waitingFor}</span>
        ) : null}
      </td>
    </tr>
  );
}

export function EvaluationPage({
  viewer,
  e,
  live,
  canAdmin,
}: {
  viewer: Viewer;
  e: EvaluationView;
  live: boolean;
  canAdmin: boolean;
}) {
  const jobs = e.jobs ?? [];
  return (
    <Layout title={`Evaluation ${e.id}`} viewer={viewer} live={live ? `/ui/evaluations/${e.id}/events` : undefined}>
      <dl>
        <dt>Project</dt>
        <dd>
          <a href={`/ui/projects/${e.project}`}>{e.project}</a>
        </dd>
        <dt>State</dt>
        <dd>
          <State s={e.status} />
          {e.supersededBy ? (
            <>
              {' '}
              · superseded by <a href={`/ui/evaluations/${e.supersededBy}`}>#{e.supersededBy}</a>
            </>
          ) : null}
        </dd>
        <dt>Jobset</dt>
        <dd>{e.jobset ?? <span class="muted">a single commit</span>}</dd>
        <dt>Commit</dt>
        <dd>
          <code>{e.commit ?? ''}</code>
        </dd>
        <dt>Trigger</dt>
        <dd>
          {e.trigger}
          {e.triggeredBy ? ` by ${e.triggeredBy}` : ''}
          {e.prNumber ? ` (pull request #${e.prNumber})` : ''}
        </dd>
        <dt>Started</dt>
        <dd>{since(e.createdAt)}</dd>
        {e.finishedAt ? (
          <>
            <dt>Finished</dt>
            <dd>{since(e.finishedAt)}</dd>
          </>
        ) : null}
        <dt>Builds</dt>
        <dd>
          {Object.entries(e.builds)
            .map(([k, v]) => `${v} ${k}`)
            .join(', ') || 'none'}
        </dd>
      </dl>
      {canAdmin && live ? (
        <Action action={`/ui/evaluations/${e.id}/cancel`} label="Cancel the evaluation" csrf={viewer.csrf} />
      ) : null}
      {e.error ? <pre>{e.error}</pre> : null}
      <table>
        <thead>
          <tr>
            <th>Attribute</th>
            <th>State</th>
            <th>Duration</th>
            <th>Spoke</th>
            <th>Attempt</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <JobRow j={j} />
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

export function BuildPage(p: {
  viewer: Viewer;
  b: BuildView & { requestedBy: RequesterView[] };
  log: { text: string; truncated: boolean } | null;
  live: boolean;
  canAdmin: boolean;
  substituter: string;
}) {
  const { b, viewer } = p;
  const outputs = Object.values(b.outputs);
  return (
    <Layout title={`Build ${b.drvPath.replace('/nix/store/', '')}`} viewer={viewer}>
      <dl>
        <dt>State</dt>
        <dd>
          <State s={b.status} />
          {b.failureKind ? ` (${b.failureKind})` : ''}
          {b.waitingFor ? <span class="muted"> {b.waitingFor}</span> : null}
        </dd>
        <dt>Derivation</dt>
        <dd>
          <code>{b.drvPath}</code>
        </dd>
        <dt>System</dt>
        <dd>
          {b.system}
          {b.requiredFeatures.length > 0 ? ` with ${b.requiredFeatures.join(', ')}` : ''}
        </dd>
        <dt>Attempt</dt>
        <dd>{b.attempt}</dd>
        <dt>Spoke</dt>
        <dd>{b.spoke ?? ''}</dd>
        {b.startedAt ? (
          <>
            <dt>Started</dt>
            <dd>{since(b.startedAt)}</dd>
          </>
        ) : null}
        {b.finishedAt ? (
          <>
            <dt>Finished</dt>
            <dd>
              {since(b.finishedAt)}
              {b.startedAt ? ` (${duration(Date.parse(b.finishedAt) - Date.parse(b.startedAt))})` : ''}
            </dd>
          </>
        ) : null}
        {b.failedDependency ? (
          <>
            <dt>Failed dependency</dt>
            <dd>
              <a href={`/ui/builds/${b.failedDependency.replace('/nix/store/', '').slice(0, 32)}`}>
                {b.failedDependency}
              </a>
            </dd>
          </>
        ) : null}
      </dl>
      {b.error ? <pre>{b.error}</pre> : null}
      {p.canAdmin && (b.status === 'queued' || b.status === 'running') ? (
        <Action action={`/ui/builds/${b.drvHash}/cancel`} label="Cancel" csrf={viewer.csrf} />
      ) : null}
      {p.canAdmin && b.status !== 'queued' && b.status !== 'running' ? (
        <Action action={`/ui/builds/${b.drvHash}/restart`} label="Restart" csrf={viewer.csrf} />
      ) : null}
      <h2>Outputs</h2>
      <ul>
        {outputs.map((o) => (
          <li>
            <code>{o}</code>
          </li>
        ))}
      </ul>
      {b.status === 'succeeded' && outputs.length > 0 ? (
        <pre>{`nix-store --realise ${outputs.join(' ')} --option extra-substituters ${p.substituter}`}</pre>
      ) : null}
      <h2>Asked for by</h2>
      <table>
        <thead>
          <tr>
            <th>Evaluation</th>
            <th>Project</th>
            <th>Jobset</th>
            <th>Commit</th>
            <th>Attribute</th>
          </tr>
        </thead>
        <tbody>
          {b.requestedBy.map((r) => (
            <tr>
              <td>
                <a href={`/ui/evaluations/${r.evaluation}`}>#{r.evaluation}</a>
              </td>
              <td>
                <a href={`/ui/projects/${r.project}`}>{r.project}</a>
              </td>
              <td>{r.jobset ?? ''}</td>
              <td>
                <code>{short(r.commit)}</code>
              </td>
              <td>{r.attr ? <code>{r.attr}</code> : <span class="muted">an input</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Log</h2>
      <p>
        <a href={`/ui/builds/${b.drvHash}/log`}>Download the whole log</a>
        {p.log?.truncated ? <span class="muted"> (below: its last part)</span> : null}
      </p>
      <pre class="log" id="log" data-live-log={p.live ? `/ui/builds/${b.drvHash}/log/events` : undefined}>
        {p.log?.text ?? (p.live ? '' : 'no log')}
      </pre>
    </Layout>
  );
}

export function SpokesPage({
  viewer,
  spokes,
  running,
}: {
  viewer: Viewer;
  spokes: VisibleSpoke[];
  running: Map<string, { drvPath: string; startedAt: string | null } | null>;
}) {
  return (
    <Layout title="Spokes" viewer={viewer}>
      {spokes.length === 0 ? <p class="muted">No spoke is connected.</p> : null}
      <table>
        <thead>
          <tr>
            <th>Spoke</th>
            <th>Systems</th>
            <th>Features</th>
            <th>Load</th>
            <th>Slots</th>
            <th>Building</th>
          </tr>
        </thead>
        <tbody>
          {spokes.map((s) => (
            <tr>
              <td>
                {s.id}{' '}
                <span class="muted">
                  {s.hostname}
                  {s.compatible ? '' : ' (other protocol version)'}
                </span>
              </td>
              <td>{s.systems.join(', ')}</td>
              <td>{s.features.join(', ')}</td>
              <td>{s.load.toFixed(2)}</td>
              <td>
                {s.running.length + s.hiddenRunning} / {s.maxJobs}
              </td>
              <td>
                {s.running.map((h) => {
                  const r = running.get(h);
                  return r ? (
                    <div>
                      <a href={`/ui/builds/${h}`}>{r.drvPath.replace('/nix/store/', '')}</a>{' '}
                      <span class="muted">
                        for {duration(r.startedAt ? Date.now() - Date.parse(r.startedAt) : null)}
                      </span>
                    </div>
                  ) : (
                    <div class="muted">a build that ended</div>
                  );
                })}
                {s.hiddenRunning > 0 ? (
                  <div class="muted">
                    {s.hiddenRunning} build{s.hiddenRunning === 1 ? '' : 's'} you cannot see
                  </div>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

export function QueuesPage({ viewer, queues, stuck }: { viewer: Viewer; queues: QueueView[]; stuck: BuildView[] }) {
  return (
    <Layout title="Queues" viewer={viewer}>
      <table>
        <thead>
          <tr>
            <th>Queue</th>
            <th>System</th>
            <th>Features</th>
            <th>Waiting</th>
            <th>Running</th>
            <th>Delayed</th>
            <th>Spokes</th>
          </tr>
        </thead>
        <tbody>
          {queues.map((q) => (
            <tr>
              <td>{q.name}</td>
              <td>{q.system}</td>
              <td>{q.requiredFeatures.join(', ')}</td>
              <td>{q.waiting}</td>
              <td>{q.active}</td>
              <td>{q.delayed}</td>
              <td>{q.spokes.length > 0 ? q.spokes.join(', ') : <span class="s-failed">none can take it</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Waiting on a missing system or feature</h2>
      {stuck.length === 0 ? <p class="muted">Nothing.</p> : null}
      <ul>
        {stuck.map((b) => (
          <li>
            <a href={`/ui/builds/${b.drvHash}`}>{b.drvPath.replace('/nix/store/', '')}</a>{' '}
            <span class="muted">{b.waitingFor}</span>
          </li>
        ))}
      </ul>
    </Layout>
  );
}

export function CachesPage({
  viewer,
  caches,
}: {
  viewer: Viewer;
  caches: { name: string; private: boolean; summary: CacheSummary }[];
}) {
  return (
    <Layout title="Caches" viewer={viewer}>
      <table>
        <thead>
          <tr>
            <th>Cache</th>
            <th>Access</th>
            <th>Paths</th>
            <th>Stored</th>
            <th>NAR size</th>
          </tr>
        </thead>
        <tbody>
          {caches.map((c) => (
            <tr>
              <td>
                <a href={`/ui/caches/${c.name}`}>{c.name}</a>
              </td>
              <td>{c.private ? 'private' : 'public'}</td>
              <td>{c.summary.paths}</td>
              <td>{bytes(c.summary.storedBytes)}</td>
              <td>{bytes(c.summary.narBytes)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

function PathList({ cache, paths }: { cache: string; paths: BrowsedPath[] }) {
  return (
    <table>
      <thead>
        <tr>
          <th>Path</th>
          <th>NAR size</th>
          <th>Stored</th>
          <th>Added</th>
        </tr>
      </thead>
      <tbody>
        {paths.map((x) => (
          <tr>
            <td>
              <a href={`/ui/caches/${cache}/paths/${x.storePath.slice(11, 43)}`}>
                <code>{x.storePath}</code>
              </a>
            </td>
            <td>{bytes(x.narSize)}</td>
            <td>{bytes(x.fileSize)}</td>
            <td>{since(new Date(x.createdAt).toISOString())}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function CachePage(p: {
  viewer: Viewer;
  name: string;
  summary: CacheSummary;
  substituter: string;
  publicKeys: string[];
  recent: BrowsedPath[];
  q: string;
  found: BrowsedPath[] | null;
}) {
  return (
    <Layout title={`Cache ${p.name}`} viewer={p.viewer}>
      <dl>
        <dt>Substituter</dt>
        <dd>
          <code>{p.substituter}</code>
        </dd>
        <dt>Public keys</dt>
        <dd>
          {p.publicKeys.map((k) => (
            <div>
              <code>{k}</code>
            </div>
          ))}
        </dd>
        <dt>Paths</dt>
        <dd>{p.summary.paths}</dd>
        <dt>Stored</dt>
        <dd>
          {bytes(p.summary.storedBytes)} ({bytes(p.summary.narBytes)} of NARs)
        </dd>
      </dl>
      <form method="get" action={`/ui/caches/${p.name}`}>
        <label>
          Search by hash or name <input type="search" name="q" value={p.q} />
        </label>{' '}
        <button type="submit">Search</button>
      </form>
      {p.found ? (
        <>
          <h2>Found</h2>
          <PathList cache={p.name} paths={p.found} />
        </>
      ) : null}
      <h2>Recent uploads</h2>
      <PathList cache={p.name} paths={p.recent} />
    </Layout>
  );
}

export function PathPage({ viewer, cache, path }: { viewer: Viewer; cache: string; path: PathDetails }) {
  const link = (sp: string) => (
    <a href={`/ui/caches/${cache}/paths/${sp.slice(11, 43)}`}>
      <code>{sp}</code>
    </a>
  );
  return (
    <Layout title={path.storePath.replace('/nix/store/', '')} viewer={viewer}>
      <p>
        <a href={`/ui/caches/${cache}`}>cache {cache}</a>
      </p>
      <h2>narinfo</h2>
      <pre>{path.narinfo}</pre>
      <h2>Signatures</h2>
      <ul>
        {path.signatures.map((s) => (
          <li>
            <code>{s}</code>
          </li>
        ))}
      </ul>
      <h2>References</h2>
      <ul>
        {path.references.map((r) => (
          <li>{link(r)}</li>
        ))}
      </ul>
      <h2>Referrers</h2>
      {path.referrers.length === 0 ? <p class="muted">None in this cache.</p> : null}
      <ul>
        {path.referrers.map((r) => (
          <li>{link(r)}</li>
        ))}
      </ul>
    </Layout>
  );
}

export function MessagePage({ viewer, title, message }: { viewer: Viewer; title: string; message: string }): VNode {
  return (
    <Layout title={title} viewer={viewer}>
      <p>{message}</p>
    </Layout>
  );
}
