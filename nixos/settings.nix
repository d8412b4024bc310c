# NixOS option declarations generated from narhub's config schema (nixos/config-schema.json,
# which a test keeps equal to src/config/schema.ts): the type, default and description of
# every option come from the schema, so the module cannot drift from what narhub accepts.
#
# Every object is also freeform (RFC 42): a key this module does not type yet (say, of a newer
# narhub) can still be set, and `narhub check-config` refuses unknown keys when the system is
# built. Keys ending in `File` name secrets: their type is a path outside the Nix store.
#
# `overrides` changes single options, by dotted path (`storage.path`, `caches.*.priority`):
# `type`, `default`, `defaultText`, `example`, and `description` (added after the schema's).
{ lib, overrides }:

let
  inherit (lib) mkOption types;

  # A JSON value, as in nixpkgs' `pkgs.formats.json`, written out here so the type needs no pkgs.
  jsonValue =
    types.nullOr (
      types.oneOf [
        types.bool
        types.int
        types.float
        types.str
        (types.lazyAttrsOf jsonValue)
        (types.listOf jsonValue)
      ]
    )
    // {
      description = "JSON value";
    };

  # An absolute path that is not in the Nix store, and not a Nix path literal either (which would
  # be copied into the store as soon as it is interpolated): the type of every secret file.
  secretPath = types.pathWith {
    inStore = false;
    absolute = true;
  };

  isEnum = s: s ? anyOf && lib.all (v: v ? const) s.anyOf;
  isUnion = s: s ? anyOf && !isEnum s;
  isObject = s: isUnion s || (s.type or null) == "object";
  isSecret = name: lib.hasSuffix "File" name;

  atLeast =
    what: check: min: base:
    types.addCheck base check
    // {
      description = "${base.description} of at least ${toString min}${what}";
    };
  intType =
    s:
    if s ? minimum && s ? maximum then
      types.ints.between s.minimum s.maximum
    else if (s.minimum or null) == 0 then
      types.ints.unsigned
    else if (s.minimum or null) == 1 then
      types.ints.positive
    else if s ? minimum then
      atLeast "" (x: x >= s.minimum) s.minimum types.int
    else
      types.int;
  # `unit` integers may also be written as narhub reads them (src/units.ts): 64G, 30d, 1h30m.
  unitPatterns = {
    size = "[0-9]+([.][0-9]+)?[KMGTP]?";
    duration = "[0-9]+|([0-9]+[ywdhms])+";
  };
  unitType =
    s:
    if s ? unit then
      types.either (intType s) (types.strMatching unitPatterns.${s.unit})
    else
      intType s;
  stringType =
    s:
    if s ? minLength then
      atLeast " characters" (x: builtins.stringLength x >= s.minLength) s.minLength types.str
    else
      types.str;

  typeOf =
    path: s:
    if isEnum s then
      types.enum (map (v: v.const) s.anyOf)
    else if isUnion s then
      types.submodule (unionModule path s.anyOf)
    else if s.type == "object" then
      types.submodule (objectModule path s.properties (s.required or [ ]))
    else if s.type == "array" then
      types.listOf (typeOf (path ++ [ "*" ]) s.items)
    else if s.type == "boolean" then
      types.bool
    else if s.type == "integer" then
      unitType s
    else if s.type == "string" then
      stringType s
    else
      throw "nixos/settings.nix: ${lib.concatStringsSep "." path} has a schema this module cannot type";

  optionOf =
    required: path: s:
    let
      name = lib.last path;
      override = overrides.${lib.concatStringsSep "." path} or { };
      base = override.type or (if isSecret name then secretPath else typeOf path s);
      # Objects the config must have default to their members' defaults; an optional object (say
      # `github`) and a key without a default are null, which the config leaves out.
      default =
        override.default or s.default or (if isObject s && lib.elem name required then { } else null);
    in
    mkOption (
      {
        type = if default == null then types.nullOr base else base;
        inherit default;
        description = lib.concatStringsSep " " (
          lib.filter (d: d != "") [
            (s.description or "")
            (override.description or "")
            (lib.optionalString (isSecret name) (
              "A file outside the Nix store, handed to the service with `LoadCredential`; "
              + "the config names its copy in the unit's credentials directory."
            ))
          ]
        );
      }
      // lib.optionalAttrs (override ? defaultText) { inherit (override) defaultText; }
      // lib.optionalAttrs (override ? example) { inherit (override) example; }
    );

  objectModule = path: properties: required: {
    freeformType = types.attrsOf jsonValue;
    options = lib.mapAttrs (name: optionOf required (path ++ [ name ])) properties;
  };

  # A union of objects told apart by `type` (`storage`): one submodule with `type` and the keys
  # of every variant; the config keeps those of the chosen variant (nixos/config.nix).
  unionModule =
    path: variants:
    let
      tag = v: v.properties.type.const;
      variantsOf = name: map tag (lib.filter (v: v.properties ? ${name}) variants);
      keys = lib.foldl' (all: v: all // removeAttrs v.properties [ "type" ]) { } variants;
      only =
        name:
        let
          among = variantsOf name;
        in
        lib.optionalString (lib.length among < lib.length variants) (
          "Only with `type = ${lib.concatMapStringsSep " or " (t: "\"${t}\"") among}`."
        );
    in
    objectModule path (
      lib.mapAttrs (
        name: s:
        s
        // {
          description = lib.concatStringsSep " " (
            lib.filter (d: d != "") [
              (s.description or "")
              (only name)
            ]
          );
        }
      ) keys
      // {
        type = {
          anyOf = map (v: { const = tag v; }) variants;
        };
      }
    ) (lib.attrNames keys);
in
{
  inherit jsonValue secretPath;

  /**
    The submodule of an object of the schema (its `properties` and the names it `required`), at
    `path` (for the overrides).
  */
  inherit objectModule;
}
