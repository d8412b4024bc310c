// Real data in /nix/store for the measurements: a NAR of shared libraries (about 1 GB), a
// thousand small paths, and a multi-GB path of pseudo-random bytes. All are deterministic, so a
// later run finds them already in the store; `<workDir>/fixtures.json` remembers the big ones.
import { createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { exec, rmTree } from './proc.js';
import { pathInfo, type NixEnv, type PathInfo } from './nix.js';

interface Manifest {
  [key: string]: PathInfo;
}

async function remembered(nix: NixEnv, workDir: string, key: string, make: () => Promise<string>): Promise<PathInfo> {
  const file = join(workDir, 'fixtures.json');
  const manifest = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Manifest;
  const known = manifest[key];
  if (known !== undefined) {
    const valid = await exec('nix-store', ['--check-validity', known.path], { env: nix.env });
    if (valid.code === 0) return known;
  }
  const info = await pathInfo(nix, await make());
  manifest[key] = info;
  await writeFile(file, `${JSON.stringify(manifest, null, 2)}\n`);
  return info;
}

/**
 * Copies (hard links where it can) regular files and symlinks of `from`, in sorted order, into
 * `to` until `budget` bytes of file content are reached. Returns the bytes taken.
 */
async function takeTree(
  from: string,
  to: string,
  budget: number,
  skip: ReadonlySet<string> = new Set(),
): Promise<number> {
  let taken = 0;
  await mkdir(to, { recursive: true });
  let entries: string[];
  try {
    entries = (await readdir(from)).sort();
  } catch {
    return 0;
  }
  for (const name of entries) {
    if (taken >= budget) break;
    if (skip.has(name)) continue;
    const src = join(from, name);
    const dst = join(to, name);
    const st = await lstat(src).catch(() => undefined);
    if (st === undefined) continue;
    if (st.isDirectory()) {
      taken += await takeTree(src, dst, budget - taken);
    } else if (st.isSymbolicLink()) {
      await symlink(await readlink(src), dst);
    } else if (st.isFile()) {
      // Skipped rather than overshooting the size by a huge file.
      if (st.size > budget - taken) continue;
      try {
        await link(src, dst);
      } catch {
        try {
          await copyFile(src, dst);
        } catch {
          continue;
        }
      }
      taken += st.size;
    }
  }
  return taken;
}

/** A path holding about `bytes` of /usr/lib, shared libraries first: real, mixed content. */
export async function usrLibPath(nix: NixEnv, workDir: string, bytes: number): Promise<PathInfo> {
  return remembered(nix, workDir, `usrlib-v2-${bytes}`, async () => {
    const src = join(workDir, `usrlib-src-${bytes}`);
    await rmTree(src);
    // Shared libraries first (as in the reference figures), then the rest of /usr/lib.
    let taken = await takeTree('/usr/lib/x86_64-linux-gnu', join(src, 'x86_64-linux-gnu'), bytes);
    if (taken < bytes) taken += await takeTree('/usr/lib', src, bytes - taken, new Set(['x86_64-linux-gnu']));
    if (taken < bytes * 0.9) throw new Error(`/usr/lib holds only ${taken} bytes; need about ${bytes}`);
    try {
      return (
        await nix.run('nix', ['store', 'add-path', src, '--name', `narhub-bench-usrlib-${Math.round(bytes / 1e6)}M`])
      ).stdout.trim();
    } finally {
      await rmTree(src);
    }
  });
}

/** `count` tiny paths, one file each; `nix-store --add` makes them all in one call. */
export async function smallPaths(nix: NixEnv, workDir: string, count: number): Promise<string[]> {
  const src = join(workDir, `small-src-${count}`);
  await rmTree(src);
  await mkdir(src, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(src, `narhub-bench-small-${i}`);
    await writeFile(file, `narhub bench small path ${i}\n`);
    files.push(file);
  }
  try {
    const out = await nix.run('nix-store', ['--add', ...files]);
    const paths = out.stdout.split('\n').filter((l) => l.startsWith('/nix/store/'));
    if (paths.length !== count) throw new Error(`nix-store --add made ${paths.length} paths, not ${count}`);
    return paths;
  } finally {
    await rmTree(src);
  }
}

/** Deterministic pseudo-random bytes (AES-128-CTR keystream of a fixed key) into `file`. */
async function writePseudoRandom(file: string, bytes: number, seed: number): Promise<void> {
  const key = Buffer.alloc(16, 0x6e);
  const iv = Buffer.alloc(16, 0);
  iv.writeUInt32BE(seed, 0);
  const cipher = createCipheriv('aes-128-ctr', key, iv);
  const zeros = Buffer.alloc(4 * 1024 * 1024);
  const out = createWriteStream(file);
  for (let left = bytes; left > 0; left -= zeros.length) {
    const chunk = cipher.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** A path of `parts` files of pseudo-random bytes, `bytes` in all (incompressible: the worst case). */
export async function randomPath(nix: NixEnv, workDir: string, bytes: number, parts = 4): Promise<PathInfo> {
  return remembered(nix, workDir, `random-${bytes}`, async () => {
    const src = join(workDir, `random-src-${bytes}`);
    await rmTree(src);
    await mkdir(src, { recursive: true });
    const each = Math.ceil(bytes / parts);
    for (let i = 0; i < parts; i++)
      await writePseudoRandom(join(src, `part-${i}.bin`), Math.min(each, bytes - i * each), i);
    try {
      return (
        await nix.run('nix', ['store', 'add-path', src, '--name', `narhub-bench-random-${Math.round(bytes / 1e6)}M`], {
          timeoutMs: 60 * 60_000,
        })
      ).stdout.trim();
    } finally {
      await rmTree(src);
    }
  });
}

/** The path's NAR, as `nix-store --dump` writes it, in `file`. */
export async function dumpNar(nix: NixEnv, path: string, file: string): Promise<void> {
  await nix.run('nix-store', ['--dump', path], { stdoutFile: file });
}

/**
 * Adds `files` (name → content) to the store as one-file paths and makes one more path whose
 * text names them all, so its closure is all of them (`builtins.toFile` with the paths in its
 * text). Returns that path and every path of the closure.
 */
export async function closureOf(
  nix: NixEnv,
  dir: string,
  name: string,
  files: { name: string; content: string }[],
): Promise<{ top: string; paths: string[] }> {
  const src = join(dir, `${name}-src`);
  await rmTree(src);
  await mkdir(src, { recursive: true });
  const written: string[] = [];
  for (const f of files) {
    const file = join(src, f.name);
    await writeFile(file, f.content);
    written.push(file);
  }
  const added: string[] = [];
  for (let i = 0; i < written.length; i += 200) {
    const out = await nix.run('nix-store', ['--add', ...written.slice(i, i + 200)]);
    added.push(...out.stdout.split('\n').filter((l) => l.startsWith('/nix/store/')));
  }
  await rmTree(src);
  const expr = join(dir, `${name}.nix`);
  const list = added.map((p) => `  "${p}"`).join('\n');
  await writeFile(
    expr,
    `builtins.toFile "${name}" (builtins.concatStringsSep "\\n" (map builtins.storePath [\n${list}\n]))\n`,
  );
  const out = await nix.run('nix-instantiate', ['--read-write-mode', '--eval', expr]);
  const top = JSON.parse(out.stdout.trim()) as string;
  return { top, paths: [...added, top] };
}
