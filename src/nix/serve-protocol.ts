import { NarhubError } from '../errors.js';
import type { Derivation } from './derivation.js';

/**
 * The `nix-store --serve` protocol (Nix's "legacy SSH" protocol, the one Hydra's queue runner
 * drives its builders with): request encoding and the meaning of answers. Pure: the process and
 * its pipes live in the spoke. Wire format: every number a little-endian u64; a string is its
 * length then its bytes, zero-padded to a multiple of 8; a list is its length then its items.
 */
export const SERVE_MAGIC_1 = 0x390c9deb;
export const SERVE_MAGIC_2 = 0x5452eecb;
/** 2.7: what Nix 2.3 … 2.x servers speak; minor 7 adds keepFailed to the build options. */
export const SERVE_PROTOCOL_VERSION = (2 << 8) | 7;

const ServeCommand = {
  QueryValidPaths: 1,
  QueryPathInfos: 2,
  DumpStorePath: 3,
  BuildDerivation: 8,
  AddToStoreNar: 9,
} as const;

/** Nix's BuildResult::Status. */
export const BuildStatus = {
  Built: 0,
  Substituted: 1,
  AlreadyValid: 2,
  PermanentFailure: 3,
  InputRejected: 4,
  OutputRejected: 5,
  TransientFailure: 6,
  CachedFailure: 7,
  TimedOut: 8,
  MiscFailure: 9,
  DependencyFailed: 10,
  LogLimitExceeded: 11,
  NotDeterministic: 12,
} as const;

export function u64(n: number | bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

const PADDING = Buffer.alloc(8);

export function wireString(s: string | Uint8Array): Buffer[] {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s.buffer, s.byteOffset, s.byteLength);
  const pad = (8 - (bytes.length % 8)) % 8;
  return pad === 0 ? [u64(bytes.length), bytes] : [u64(bytes.length), bytes, PADDING.subarray(0, pad)];
}

export function wireStrings(list: readonly string[]): Buffer[] {
  return [u64(list.length), ...list.flatMap((s) => wireString(s))];
}

/** Bytes a string of `length` bytes takes on the wire after its length: padded to 8. */
export const paddedLength = (length: number) => (length + 7) & ~7;

/** Limits for one build (seconds; 0 = none), as the server's build commands read them. */
export interface ServeBuildOptions {
  maxSilentTime: number;
  buildTimeout: number;
  /** Bytes; 0 = no limit. */
  maxLogSize: number;
}

function buildOptions(o: ServeBuildOptions): Buffer[] {
  // maxSilentTime, buildTimeout, maxLogSize, buildRepeat, enforceDeterminism, keepFailed.
  return [u64(o.maxSilentTime), u64(o.buildTimeout), u64(o.maxLogSize), u64(0), u64(0), u64(0)];
}

export function queryValidPathsRequest(paths: readonly string[], opts: { lock: boolean; substitute: boolean }): Buffer {
  return Buffer.concat([
    u64(ServeCommand.QueryValidPaths),
    u64(opts.lock ? 1 : 0),
    u64(opts.substitute ? 1 : 0),
    ...wireStrings(paths),
  ]);
}

export function queryPathInfosRequest(paths: readonly string[]): Buffer {
  return Buffer.concat([u64(ServeCommand.QueryPathInfos), ...wireStrings(paths)]);
}

export function dumpStorePathRequest(path: string): Buffer {
  return Buffer.concat([u64(ServeCommand.DumpStorePath), ...wireString(path)]);
}

/**
 * Builds `drvPath` from its "basic derivation": the `.drv` with its input derivations replaced
 * by their outputs (`inputPaths`, which must all be valid in the server's store). The server
 * does not need the `.drv` file itself, nor does it substitute anything.
 */
export function buildDerivationRequest(
  drvPath: string,
  drv: Derivation,
  inputPaths: readonly string[],
  options: ServeBuildOptions,
): Buffer {
  const outputs = Object.entries(drv.outputs);
  const parts: Buffer[] = [u64(ServeCommand.BuildDerivation), ...wireString(drvPath), u64(outputs.length)];
  for (const [name, out] of outputs)
    parts.push(...wireString(name), ...wireString(out.path), ...wireString(out.hashAlgo), ...wireString(out.hash));
  parts.push(
    ...wireStrings(inputPaths),
    ...wireString(drv.platform),
    ...wireString(drv.builder),
    ...wireStrings(drv.args),
  );
  const env = Object.entries(drv.env);
  parts.push(u64(env.length));
  for (const [k, v] of env) parts.push(...wireString(k), ...wireString(v));
  parts.push(...buildOptions(options));
  return Buffer.concat(parts);
}

/** What `AddToStoreNar` needs to know of a path before its NAR. */
export interface ServePathInfo {
  path: string;
  deriver: string | undefined;
  /** `sha256:<nix32>` (any form Nix parses). */
  narHash: string;
  references: string[];
  narSize: number;
  signatures: string[];
  ca: string | undefined;
}

/** The header of `AddToStoreNar`; exactly `narSize` bytes of NAR follow it. */
export function addToStoreNarHeader(info: ServePathInfo): Buffer {
  if (!(info.narSize > 0)) throw new NarhubError('BAD_REQUEST', `${info.path}: narSize is required`);
  return Buffer.concat([
    u64(ServeCommand.AddToStoreNar),
    ...wireString(info.path),
    ...wireString(info.deriver ?? ''),
    ...wireString(info.narHash),
    ...wireStrings(info.references),
    u64(0), // registrationTime: now
    u64(info.narSize),
    u64(0), // not ultimately trusted: it was built elsewhere
    ...wireStrings(info.signatures),
    ...wireString(info.ca ?? ''),
  ]);
}

export type BuildVerdict = 'success' | 'build' | 'timeout' | 'infrastructure';

/**
 * What a build's status means for the job. Deterministic failures (the builder failed, its
 * output was rejected, it was not reproducible, it logged too much) are build failures; a
 * transient failure (Nix's word for fixed-output fetches and full disks), missing inputs and
 * anything else Nix could not do are the infrastructure's, and are retried.
 */
export function buildVerdict(status: number): BuildVerdict {
  switch (status) {
    case BuildStatus.Built:
    case BuildStatus.Substituted:
    case BuildStatus.AlreadyValid:
      return 'success';
    case BuildStatus.PermanentFailure:
    case BuildStatus.OutputRejected:
    case BuildStatus.CachedFailure:
    case BuildStatus.LogLimitExceeded:
    case BuildStatus.NotDeterministic:
      return 'build';
    case BuildStatus.TimedOut:
      return 'timeout';
    default:
      return 'infrastructure';
  }
}
