# The JSON config narhub.service runs with, and the credentials the unit loads, from the
# module's resolved options. Builtins only, so that a test can check the committed module
# configs (test/fixtures/nixos/module-configs.json) against it without nixpkgs.
#
# - `settings`: services.narhub.settings as the module system resolved it. null means "not
#   set" and is left out; of the `storage` union only the keys of the chosen `type` are kept.
# - `caches`: services.narhub.caches, by name; the config lists them in name order.
# - Every `…File` key names a secret file: it becomes a credential of the unit, named after the
#   key's path (`storage.accessKeyIdFile`, `caches.main.signingKeyFile`), and the config names
#   the credential's copy in `credentialsDir` instead.
# - `hub`: set over the config's `hub` last (the local Redis's URL, which is no file to load).
{
  schema,
  settings,
  caches,
  credentialsDir,
  hub ? { },
}:

let
  inherit (builtins)
    all
    attrNames
    attrValues
    concatMap
    concatStringsSep
    filter
    foldl'
    head
    isAttrs
    isList
    isString
    listToAttrs
    mapAttrs
    stringLength
    substring
    ;
  hasSuffix =
    suffix: s:
    stringLength s >= stringLength suffix
    && substring (stringLength s - stringLength suffix) (stringLength suffix) s == suffix;
  isEnum = s: s ? anyOf && all (v: v ? const) s.anyOf;
  isUnion = s: s ? anyOf && !isEnum s;

  # A value as narhub reads it: nulls and the module system's `_module` left out.
  objectOf =
    properties: value:
    listToAttrs (
      map (name: {
        inherit name;
        value = valueOf (properties.${name} or null) value.${name};
      }) (filter (name: name != "_module" && value.${name} != null) (attrNames value))
    );
  valueOf =
    s: v:
    if s == null then
      v # a freeform key, as given
    else if isUnion s then
      variantOf s.anyOf v
    else if (s.type or null) == "object" && isAttrs v then
      objectOf s.properties v
    else if (s.type or null) == "array" && isList v then
      map (valueOf s.items) v
    else
      v;
  variantOf =
    variants: v:
    let
      chosen = head (filter (variant: variant.properties.type.const == v.type) variants);
      others = filter (name: !(chosen.properties ? ${name})) (
        concatMap (variant: attrNames variant.properties) variants
      );
    in
    objectOf chosen.properties (removeAttrs v others);

  # { value; credentials = { name = host file; }; } with every secret file replaced.
  withCredentials =
    path: v:
    if isAttrs v then
      let
        parts = mapAttrs (
          key: x:
          let
            name = concatStringsSep "." (path ++ [ key ]);
          in
          if hasSuffix "File" key && isString x then
            {
              value = "${credentialsDir}/${name}";
              credentials.${name} = x;
            }
          else
            withCredentials (path ++ [ key ]) x
        ) v;
      in
      {
        value = mapAttrs (_: part: part.value) parts;
        credentials = foldl' (all: part: all // part.credentials) { } (attrValues parts);
      }
    else
      {
        value = v;
        credentials = { };
      };

  top = withCredentials [ ] (objectOf (removeAttrs schema.properties [ "caches" ]) settings);
  cacheList = map (
    name:
    withCredentials [ "caches" name ] (
      objectOf schema.properties.caches.items.properties caches.${name} // { inherit name; }
    )
  ) (attrNames caches);
in
{
  config = top.value // {
    caches = map (c: c.value) cacheList;
    hub = (top.value.hub or { }) // hub;
  };
  credentials = foldl' (all: c: all // c.credentials) top.credentials cacheList;
}
