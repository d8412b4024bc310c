// A leaf both xz decoders import: io/compression.ts's on the event loop, io/codecs/decompress.ts's on
// a codec thread.

/**
 * The memory one xz decoder may take. xz dictionaries are chosen by the uploader, and the decoder
 * needs about the dictionary's size; Nix's presets, up to -9 (64 MiB, 65 MiB to decode), fit. A
 * larger one is refused (`Memory usage limit reached`) rather than let any write-token holder
 * make each upload hold gigabytes.
 */
export const XZ_MEMLIMIT = 80 * 1024 * 1024;
