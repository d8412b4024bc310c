import { NarhubError } from '../errors.js';
import { decodeBase64Strict } from './base64.js';
import { parseContentAddress } from './content-address.js';
import { parseHash } from './hash.js';
import { quote } from './quote.js';
import { DEFAULT_STORE_DIR, isDerivationPath, parseStorePath, parseStorePathBasename } from './store-path.js';

/** The contents of a `.narinfo` file (docs/protocol.md, Narinfo). */
export interface NarInfo {
  /** Full path, `<storeDir>/<hash>-<name>`. */
  storePath: string;
  url: string;
  /** Never empty: a missing or empty `Compression` line means `bzip2`. */
  compression: string;
  fileHash?: string;
  fileSize?: number;
  /** As written in the file (any encoding parseHash accepts), not normalised. */
  narHash: string;
  narSize: number;
  /** Basenames (`<hash>-<name>`), in file order. */
  references: string[];
  /** Basename of the `.drv`; undefined when absent or `unknown-deriver`. */
  deriver?: string;
  system?: string;
  /** `<keyname>:<base64 signature>` strings, in file order. */
  sigs: string[];
  ca?: string;
}

const UNKNOWN_DERIVER = 'unknown-deriver';
const DEFAULT_COMPRESSION = 'bzip2';
const SIGNATURE_BYTES = 64;

const KNOWN_FIELDS = new Set([
  'StorePath',
  'URL',
  'Compression',
  'FileHash',
  'FileSize',
  'NarHash',
  'NarSize',
  'References',
  'Deriver',
  'System',
  'Sig',
  'CA',
]);

// Validators shared by parse and format. Each returns why a value is wrong, or undefined.

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function storePathProblem(value: string, storeDir: string): string | undefined {
  try {
    parseStorePath(value, storeDir);
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}

function basenameProblem(value: string): string | undefined {
  try {
    parseStorePathBasename(value);
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}

function hashProblem(value: string): string | undefined {
  try {
    parseHash(value);
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}

function tokenProblem(value: string, what: string): string | undefined {
  if (value === '') return `${what} is empty`;
  // Whitespace or control characters would be mangled or split by Nix and by HTTP clients.
  if (/[\s\x00-\x1f\x7f]/.test(value)) return `${what} ${quote(value)} contains whitespace or control characters`;
  return undefined;
}

function derivationProblem(value: string): string | undefined {
  const problem = basenameProblem(value);
  if (problem !== undefined) return problem;
  if (!isDerivationPath(parseStorePathBasename(value))) return `${quote(value)} is not a .drv basename`;
  return undefined;
}

function signatureProblem(value: string): string | undefined {
  const colon = value.indexOf(':');
  if (colon <= 0) return `${quote(value)} is not "<keyname>:<base64 signature>"`;
  const nameProblem = tokenProblem(value.slice(0, colon), 'key name');
  if (nameProblem !== undefined) return nameProblem;
  const sig = decodeBase64Strict(value.slice(colon + 1));
  if (sig === undefined) return `signature of key ${quote(value.slice(0, colon))} is not valid base64`;
  if (sig.length !== SIGNATURE_BYTES) return `signature is ${sig.length} bytes, expected ${SIGNATURE_BYTES}`;
  return undefined;
}

/** `text:sha256:<hash>`, `fixed:[r:|git:]<algo>:<hash>` (the CA field), as Nix parses it. */
function contentAddressProblem(value: string): string | undefined {
  try {
    parseContentAddress(value);
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}

/** Byte-wise (UTF-8) order, as Nix's std::set<std::string> sorts. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const DECIMAL_RE = /^(0|[1-9][0-9]*)$/;

function parseDecimal(value: string): number | string {
  if (!DECIMAL_RE.test(value)) return `${quote(value)} is not a plain decimal number`;
  const n = Number(value);
  if (!Number.isSafeInteger(n)) return `${quote(value)} is too large`;
  return n;
}

function sizeProblem(n: number, positive: boolean): string | undefined {
  if (!Number.isSafeInteger(n) || n < 0) return `${n} is not a non-negative integer`;
  if (positive && n === 0) return 'must be greater than 0';
  return undefined;
}

class FieldError extends Error {
  constructor(
    readonly line: number,
    readonly field: string,
    readonly what: string,
  ) {
    super(what);
  }
}

/**
 * Parses a narinfo strictly. Nix's own reader is forgiving in ways that make it misread files
 * (a missing space after ':' shifts the value, `References:` swallows the next line), so a server
 * refuses anything a Nix client might read differently from what was meant, and says exactly which
 * line and field are at fault: `line N: <Field>: <what is wrong>`. Missing required fields are
 * reported at the line after the last one.
 */
export function parseNarInfo(text: string, storeDir = DEFAULT_STORE_DIR): NarInfo {
  try {
    return parseNarInfoLines(text, storeDir);
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    throw new NarhubError('NARINFO_PARSE_ERROR', `line ${err.line}: ${err.field}: ${err.what}`, {
      details: { line: err.line, field: err.field },
    });
  }
}

function parseNarInfoLines(text: string, storeDir: string): NarInfo {
  const endsWithLf = text.endsWith('\n');
  const lines = text === '' ? [] : (endsWithLf ? text.slice(0, -1) : text).split('\n');

  const seen = new Map<string, number>();
  const sigLines = new Map<string, number>();
  let storePath: string | undefined;
  let url: string | undefined;
  let compression: string | undefined;
  let fileHash: string | undefined;
  let fileSize: number | undefined;
  let narHash: string | undefined;
  let narSize: number | undefined;
  let references: string[] = [];
  let deriver: string | undefined;
  let system: string | undefined;
  let ca: string | undefined;
  const sigs: string[] = [];

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    const colon = line.indexOf(':');
    const key = colon >= 0 ? line.slice(0, colon) : undefined;
    // Name the field when there is a sensible key; otherwise show the start of the line.
    const label = key !== undefined && /^[A-Za-z0-9_.-]{1,40}$/.test(key) ? key : quote(line, 40);
    const fail = (what: string, field = label): never => {
      throw new FieldError(lineNo, field, what);
    };

    if (line.includes('\r')) fail('contains a carriage return (narinfo lines must end with LF, not CRLF)');
    if (line === '') fail('blank lines are not allowed', '(blank line)');
    if (key === undefined) fail('expected "Key: value" but the line has no ":"');
    if (key === '') fail('the key before ":" is empty');
    if (line[colon + 1] !== ' ') fail('expected ": " (a colon followed by exactly one space) after the key');
    if (index === lines.length - 1 && !endsWithLf) fail('missing final newline (the last line must end with "\\n")');
    if (key === undefined || !KNOWN_FIELDS.has(key)) return; // unknown keys are ignored, as Nix does

    const value = line.slice(colon + 2);
    if (key !== 'Sig') {
      const first = seen.get(key);
      if (first !== undefined) fail(`duplicate field (first given on line ${first})`);
      seen.set(key, lineNo);
    }
    // References alone tolerates extra spaces (Nix tokenises it); elsewhere they would be kept in the value.
    if (key !== 'References' && value !== value.trim()) {
      fail(`value ${quote(value)} has leading or trailing whitespace (write exactly one space after ":")`);
    }
    const check = (problem: string | undefined): void => {
      if (problem !== undefined) fail(problem);
    };
    const decimal = (positive: boolean): number => {
      const n = parseDecimal(value);
      if (typeof n === 'string') return fail(n);
      check(sizeProblem(n, positive));
      return n;
    };

    switch (key) {
      case 'StorePath':
        check(storePathProblem(value, storeDir));
        storePath = value;
        break;
      case 'URL':
        check(tokenProblem(value, 'URL'));
        url = value;
        break;
      case 'Compression':
        if (value !== '') check(tokenProblem(value, 'compression'));
        compression = value === '' ? DEFAULT_COMPRESSION : value;
        break;
      case 'FileHash':
        check(hashProblem(value));
        fileHash = value;
        break;
      case 'FileSize':
        fileSize = decimal(false);
        break;
      case 'NarHash':
        check(hashProblem(value));
        narHash = value;
        break;
      case 'NarSize':
        narSize = decimal(true);
        break;
      case 'References': {
        references = value.split(' ').filter((r) => r !== '');
        const unique = new Set<string>();
        for (const ref of references) {
          check(basenameProblem(ref));
          if (unique.has(ref)) fail(`${ref} is listed twice`);
          unique.add(ref);
        }
        break;
      }
      case 'Deriver':
        if (value !== UNKNOWN_DERIVER) {
          check(derivationProblem(value));
          deriver = value;
        }
        break;
      case 'System':
        check(tokenProblem(value, 'system'));
        system = value;
        break;
      case 'Sig': {
        check(signatureProblem(value));
        const first = sigLines.get(value);
        if (first !== undefined) fail(`the same signature is given twice (first on line ${first})`);
        sigLines.set(value, lineNo);
        sigs.push(value);
        break;
      }
      case 'CA':
        check(contentAddressProblem(value));
        ca = value;
        break;
    }
  });

  const end = lines.length + 1;
  const missing = (field: string): never => {
    throw new FieldError(end, field, 'required field is missing');
  };
  const info: NarInfo = {
    storePath: storePath ?? missing('StorePath'),
    url: url ?? missing('URL'),
    compression: compression ?? DEFAULT_COMPRESSION,
    narHash: narHash ?? missing('NarHash'),
    narSize: narSize ?? missing('NarSize'),
    references,
    sigs,
  };
  // Optional fields are left out rather than set to undefined, so results compare with deepEqual.
  if (fileHash !== undefined) info.fileHash = fileHash;
  if (fileSize !== undefined) info.fileSize = fileSize;
  if (deriver !== undefined) info.deriver = deriver;
  if (system !== undefined) info.system = system;
  if (ca !== undefined) info.ca = ca;
  return info;
}

/**
 * Renders a narinfo exactly as Nix writes one: its field order, LF endings, `References: ` with
 * its trailing space even when empty, and `Sig` lines sorted (and de-duplicated: they are a set).
 * Invalid values throw NARINFO_INVALID rather than produce a file Nix would misread.
 */
export function formatNarInfo(info: NarInfo, storeDir = DEFAULT_STORE_DIR): string {
  const check = (field: string, problem: string | undefined): void => {
    if (problem !== undefined) throw new NarhubError('NARINFO_INVALID', `${field}: ${problem}`, { details: { field } });
  };
  check('StorePath', storePathProblem(info.storePath, storeDir));
  check('URL', tokenProblem(info.url, 'URL'));
  check('Compression', tokenProblem(info.compression, 'compression'));
  if (info.fileHash !== undefined) check('FileHash', hashProblem(info.fileHash));
  if (info.fileSize !== undefined) check('FileSize', sizeProblem(info.fileSize, false));
  check('NarHash', hashProblem(info.narHash));
  check('NarSize', sizeProblem(info.narSize, true));
  const unique = new Set<string>();
  for (const ref of info.references) {
    check('References', basenameProblem(ref));
    check('References', unique.has(ref) ? `${ref} is listed twice` : undefined);
    unique.add(ref);
  }
  if (info.deriver !== undefined) check('Deriver', derivationProblem(info.deriver));
  if (info.system !== undefined) check('System', tokenProblem(info.system, 'system'));
  for (const sig of info.sigs) check('Sig', signatureProblem(sig));
  if (info.ca !== undefined) check('CA', contentAddressProblem(info.ca));

  let out = `StorePath: ${info.storePath}\nURL: ${info.url}\nCompression: ${info.compression}\n`;
  if (info.fileHash !== undefined) out += `FileHash: ${info.fileHash}\n`;
  if (info.fileSize !== undefined) out += `FileSize: ${info.fileSize}\n`;
  out += `NarHash: ${info.narHash}\nNarSize: ${info.narSize}\n`;
  out += `References: ${info.references.join(' ')}\n`;
  if (info.deriver !== undefined) out += `Deriver: ${info.deriver}\n`;
  if (info.system !== undefined) out += `System: ${info.system}\n`;
  for (const sig of [...new Set(info.sigs)].sort(compareBytes)) out += `Sig: ${sig}\n`;
  if (info.ca !== undefined) out += `CA: ${info.ca}\n`;
  return out;
}
