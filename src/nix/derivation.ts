import { NarhubError } from '../errors.js';

/** One output of a derivation, as the `.drv` file states it. */
export interface DerivationOutput {
  /** Full store path; empty for floating content-addressed outputs. */
  path: string;
  /** `r:sha256`, `sha256`, … for fixed-output derivations, else empty. */
  hashAlgo: string;
  /** Base-16 hash for fixed-output derivations, else empty. */
  hash: string;
}

/** A parsed `.drv` file (Nix's ATerm `Derive(…)` form). */
export interface Derivation {
  outputs: Record<string, DerivationOutput>;
  /** Input derivation path -> the outputs of it that are used. */
  inputDrvs: Record<string, string[]>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

const ESCAPES: Record<string, string> = { n: '\n', r: '\r', t: '\t', '\\': '\\', '"': '"' };

/**
 * Parses the text of a `.drv` file: `Derive([outputs],[inputDrvs],[inputSrcs],platform,builder,
 * [args],[env])`. Strings are double-quoted with `\"`, `\\`, `\n`, `\r` and `\t` escapes; Nix
 * writes no other form. Throws NarhubError('BAD_REQUEST') for anything else.
 */
export function parseDerivation(text: string): Derivation {
  let pos = 0;
  const fail = (what: string): never => {
    throw new NarhubError('BAD_REQUEST', `not a derivation: ${what} at offset ${pos}`);
  };
  const expect = (literal: string) => {
    if (!text.startsWith(literal, pos)) fail(`expected '${literal}'`);
    pos += literal.length;
  };
  const peek = (c: string) => text[pos] === c;
  const str = (): string => {
    expect('"');
    let out = '';
    let start = pos;
    for (;;) {
      const c = text[pos];
      if (c === undefined) fail('unterminated string');
      if (c === '"') break;
      if (c === '\\') {
        out += text.slice(start, pos);
        const e = ESCAPES[text[pos + 1] ?? ''];
        if (e === undefined) fail('unknown escape');
        out += e;
        pos += 2;
        start = pos;
        continue;
      }
      pos++;
    }
    out += text.slice(start, pos);
    pos++;
    return out;
  };
  /** `[item,item,…]` */
  const list = <T>(item: () => T): T[] => {
    expect('[');
    const out: T[] = [];
    if (peek(']')) {
      pos++;
      return out;
    }
    for (;;) {
      out.push(item());
      if (peek(',')) pos++;
      else break;
    }
    expect(']');
    return out;
  };
  const tuple = <T>(body: () => T): T => {
    expect('(');
    const value = body();
    expect(')');
    return value;
  };

  expect('Derive(');
  const outputs: Record<string, DerivationOutput> = {};
  for (const [name, path, hashAlgo, hash] of list(() =>
    tuple(() => [str(), (expect(','), str()), (expect(','), str()), (expect(','), str())] as const),
  )) {
    if (name in outputs) fail(`duplicate output ${name}`);
    outputs[name] = { path, hashAlgo, hash };
  }
  expect(',');
  const inputDrvs: Record<string, string[]> = {};
  for (const [path, names] of list(() => tuple(() => [str(), (expect(','), list(str))] as const)))
    inputDrvs[path] = names;
  expect(',');
  const inputSrcs = list(str);
  expect(',');
  const platform = str();
  expect(',');
  const builder = str();
  expect(',');
  const args = list(str);
  expect(',');
  const env: Record<string, string> = {};
  for (const [k, v] of list(() => tuple(() => [str(), (expect(','), str())] as const))) env[k] = v;
  expect(')');
  if (pos !== text.length) fail('trailing bytes');
  if (Object.keys(outputs).length === 0) fail('no outputs');
  return { outputs, inputDrvs, inputSrcs, platform, builder, args, env };
}

/**
 * The store paths a build of `drv` needs valid in the store: its input sources and the used
 * outputs of its input derivations (`outputsOf` an input `.drv`: output name -> store path).
 * This is the input set of the "basic derivation" Nix builds remotely (`nix-store --serve`'s
 * build command).
 */
export function inputPathsOf(
  drv: Derivation,
  outputsOf: (drvPath: string) => Readonly<Record<string, string | undefined>>,
): string[] {
  const paths = new Set(drv.inputSrcs);
  for (const [drvPath, names] of Object.entries(drv.inputDrvs)) {
    const outputs = outputsOf(drvPath);
    for (const name of names) {
      const out = outputs[name];
      if (!out) throw new NarhubError('BAD_REQUEST', `${drvPath} has no output ${name} with a known path`);
      paths.add(out);
    }
  }
  return [...paths].sort();
}

/** A derivation's output name -> store path, for the outputs whose path it fixes. */
export function outputPathsOf(drv: Derivation): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, o] of Object.entries(drv.outputs)) if (o.path) out[name] = o.path;
  return out;
}
