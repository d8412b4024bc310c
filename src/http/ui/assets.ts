// The UI's only static files: one stylesheet and one small script (no framework). The pages
// work without the script; with it, evaluation pages refresh and build logs grow live over SSE.

export const STYLE = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --wait: #9a6700; --run: #0969da; --muted: #6e7781; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; }
header { display: flex; gap: 1.2em; align-items: center; flex-wrap: wrap;
  padding: .6em 1.2em; border-bottom: 1px solid #8884; }
header .brand { font-weight: 700; }
header form, header .login { margin-left: auto; }
main { padding: 1em 1.2em; max-width: 80em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1.2em; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #8883; vertical-align: top; }
th { font-weight: 600; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { background: #8881; padding: .6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
pre.log { max-height: 70vh; overflow-y: auto; }
.state { font-weight: 600; white-space: nowrap; }
.s-succeeded, .s-cached, .s-passing { color: var(--ok); }
.s-failed, .s-dependency-failed, .s-eval-failed, .s-failing { color: var(--bad); }
.s-queued, .s-pending, .s-waiting { color: var(--wait); }
.s-running, .s-building, .s-evaluating { color: var(--run); }
.s-cancelled { color: var(--muted); }
.muted { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; }
dt { font-weight: 600; }
dd { margin: 0; }
form.inline { display: inline; }
button { cursor: pointer; }
`;

/**
 * Live updates where JavaScript runs: an element with `data-live-log` appends the SSE `log`
 * events of its URL as text (never as HTML); one with `data-live-page` refetches the page when
 * its SSE source says something changed and swaps in the new <main>.
 */
export const SCRIPT = `(() => {
  const log = document.querySelector('[data-live-log]');
  if (log && window.EventSource) {
    const es = new EventSource(log.getAttribute('data-live-log'));
    let first = true;
    es.addEventListener('log', (e) => {
      if (first) { log.textContent = ''; first = false; }
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(document.createTextNode(e.data));
      if (atEnd) log.scrollTop = log.scrollHeight;
    });
    es.addEventListener('end', () => { es.close(); setTimeout(() => location.reload(), 300); });
    es.addEventListener('error', () => {});
  }
  const page = document.querySelector('[data-live-page]');
  if (page && window.EventSource) {
    const es = new EventSource(page.getAttribute('data-live-page'));
    es.addEventListener('changed', async () => {
      const res = await fetch(location.href, { headers: { accept: 'text/html' } });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      const next = doc.querySelector('main');
      if (next) document.querySelector('main').replaceWith(next);
    });
    es.addEventListener('end', () => es.close());
  }
})();
`;
