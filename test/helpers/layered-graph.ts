// The synthetic flake of the hub's scale tests and benches: `layers` layers of `width` trivial
// derivations, each depending on three of the layer below (shared dependencies everywhere).

/** `graph.nix`: a function of `nonce` (so that a new nonce shares nothing) to the top layer, by name. */
export function layeredGraphNix(width: number, layers: number): string {
  return `{ nonce }:
let
  width = ${width};
  layers = ${layers};
  mod = a: b: a - (a / b) * b;
  mk = layer: i: derivation ({
    name = "bench-\${toString layer}-\${toString i}";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "echo \${toString layer}-\${toString i}-\${nonce} > $out" ];
  } // (if layer == 0 then { } else {
    a = node (layer - 1) i;
    b = node (layer - 1) (mod (i * 7 + 1) width);
    c = node (layer - 1) (mod (i * 13 + 5) width);
  }));
  nodes = builtins.genList (layer: builtins.genList (i: mk layer i) width) layers;
  node = layer: i: builtins.elemAt (builtins.elemAt nodes layer) i;
in
builtins.listToAttrs (builtins.genList (i: { name = "top-\${toString i}"; value = node (layers - 1) i; }) width)
`;
}

/** `flake.nix` beside `graph.nix`: the top layer as the checks of x86_64-linux. */
export function layeredFlakeNix(nonce: string): string {
  return `{ outputs = { self }: { checks.x86_64-linux = import ./graph.nix { nonce = "${nonce}"; }; }; }\n`;
}

/** The names of the inputs of `bench-LAYER-I` in a graph of the given width. */
export function layeredInputsOf(name: string, width: number): string[] {
  const [, layer, i] = /^bench-(\d+)-(\d+)$/.exec(name)!.map(Number) as [number, number, number];
  if (layer === 0) return [];
  return [...new Set([i, (i * 7 + 1) % width, (i * 13 + 5) % width])].map((k) => `bench-${layer - 1}-${k}`);
}
