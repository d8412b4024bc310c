// package.json and package-lock.json as the Nix package's evaluation tests read them.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './repo.js';

export interface LockEntry {
  name?: string;
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
}
export interface PackageJson {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  scripts: Record<string, string>;
  bin: Record<string, string>;
}
export interface Deps {
  name: string;
  package: PackageJson;
  packageLock: { packages: Record<string, LockEntry> };
}

/** The store path prefix the stand-ins of nixpkgs-stand-ins.nix give what they make. */
export const FAKE_STORE = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-';

/** The committed lock's entries and package.json. */
export async function committed(): Promise<{ lock: Record<string, LockEntry>; pkg: PackageJson }> {
  const root = repoRoot();
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as PackageJson;
  return { lock: lock.packages, pkg };
}
