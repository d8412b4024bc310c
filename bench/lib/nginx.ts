// nginx as the reference static server: started by the bench on 127.0.0.1 with its own config
// in a temporary directory (never the system service), serving a directory laid out as a
// binary cache.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { childPids, cpuSeconds, exited, freePort, stopChild } from './proc.js';
import type { Scope } from './scope.js';

export interface Nginx {
  /** e.g. http://127.0.0.1:41234 (the served directory is the root). */
  url: string;
  config: string;
  /** CPU time (user + system) of the master and its workers so far, seconds. */
  cpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The configuration: nginx's stock settings for static files (`sendfile`, `tcp_nopush`,
 * `worker_processes auto`), access log off (narhub logs no requests by default either) and
 * keep-alive connections never recycled (narhub does not recycle them).
 */
function nginxConfig(dir: string, root: string, port: number, dav = false): string {
  // As root, workers would run as `nobody` and could not read narhub's 0750 data directory.
  const user = process.getuid?.() === 0 ? 'user root root;\n' : '';
  return `${user}worker_processes auto;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  types {
    text/x-nix-narinfo narinfo;
    text/x-nix-cache-info nix-cache-info;
  }
  default_type application/x-nix-nar;
  server {
    listen 127.0.0.1:${port};
    root ${root};${
      dav
        ? `
    dav_methods PUT;
    create_full_put_path on;
    client_max_body_size 0;`
        : ''
    }
  }
}
`;
}

/**
 * nginx on a free port serving `root`; with `dav`, also a WebDAV PUT target (`dav_methods PUT`,
 * directories made on demand): what a team without a cache server uploads to.
 */
export async function startNginx(scope: Scope, opts: { dir: string; root: string; dav?: boolean }): Promise<Nginx> {
  await mkdir(opts.dir, { recursive: true });
  const port = await freePort();
  const config = join(opts.dir, 'nginx.conf');
  await mkdir(opts.root, { recursive: true });
  await writeFile(config, nginxConfig(opts.dir, opts.root, port, opts.dav));
  const child = spawn('nginx', ['-c', config, '-p', opts.dir, '-e', join(opts.dir, 'error.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let stopped: Promise<void> | undefined;
  // SIGQUIT: graceful shutdown of master and workers.
  const stop = () => (stopped ??= stopChild(child, 'SIGQUIT', 10_000));
  scope.after(stop);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = await readFile(join(opts.dir, 'error.log'), 'utf8').catch(() => '');
      throw new Error(`nginx exited with ${child.exitCode}: ${stderr}${log}`);
    }
    try {
      await fetch(`${url}/`, { method: 'HEAD' });
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`nginx did not listen on ${url} within 20 s: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  void exited(child);
  const master = child.pid!;
  return {
    url,
    config,
    async cpuSeconds() {
      const pids = [master, ...(await childPids(master))];
      return (await Promise.all(pids.map((p) => cpuSeconds(p).catch(() => 0)))).reduce((a, b) => a + b, 0);
    },
    stop,
  };
}
