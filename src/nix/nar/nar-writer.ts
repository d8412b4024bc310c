/**
 * Builds NARs (docs/protocol.md, NAR) for tests and benchmarks. Not a validator: whatever the tree says is
 * written, so tests can also produce invalid archives by hand-editing the output.
 */
export type NarTree =
  | { type: 'regular'; contents: Uint8Array; executable?: boolean }
  | { type: 'symlink'; target: string }
  | { type: 'directory'; entries: Record<string, NarTree> };

const ZEROS = new Uint8Array(8);
const utf8 = new TextEncoder();

/** Yields the NAR in small chunks; file contents are yielded as-is, without copying. */
export function* narFromTree(tree: NarTree): Generator<Uint8Array, void, undefined> {
  yield* str(utf8.encode('nix-archive-1'));
  yield* node(tree);
}

function* node(tree: NarTree): Generator<Uint8Array, void, undefined> {
  yield* tokens('(', 'type');
  switch (tree.type) {
    case 'regular':
      yield* tokens('regular');
      if (tree.executable === true) yield* tokens('executable', '');
      yield* tokens('contents');
      yield* str(tree.contents);
      break;
    case 'symlink':
      yield* tokens('symlink', 'target', tree.target);
      break;
    case 'directory': {
      yield* tokens('directory');
      // Sorted by raw bytes, as Nix requires; UTF-16 string order differs for some names.
      const names = Object.keys(tree.entries)
        .map((name) => ({ name, bytes: utf8.encode(name) }))
        .sort((a, b) => Buffer.compare(a.bytes, b.bytes));
      for (const { name, bytes } of names) {
        yield* tokens('entry', '(', 'name');
        yield* str(bytes);
        yield* tokens('node');
        yield* node(tree.entries[name]!);
        yield* tokens(')');
      }
      break;
    }
  }
  yield* tokens(')');
}

function* tokens(...values: string[]): Generator<Uint8Array, void, undefined> {
  for (const v of values) yield* str(utf8.encode(v));
}

/** str(s): u64 LE length, the bytes, zero padding to a multiple of 8. */
function* str(bytes: Uint8Array): Generator<Uint8Array, void, undefined> {
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(bytes.length), true);
  yield len;
  if (bytes.length > 0) yield bytes;
  const pad = (8 - (bytes.length % 8)) % 8;
  if (pad > 0) yield ZEROS.subarray(0, pad);
}
