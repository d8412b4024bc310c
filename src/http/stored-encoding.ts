import type { IncomingHttpHeaders } from 'node:http';
import Negotiator from 'negotiator';

/**
 * Whether a small file stored with a Content-Encoding (Nix's log-, ls- and narinfo-compression)
 * may be sent in that coding. A request with no Accept-Encoding takes any coding (HTTP), and
 * Nix 2.8, which sends none, decodes every compression Nix writes. A request that names codings
 * gets the stored one only if it is among them: Nix 2.34 and later let libcurl both name and
 * decode the codings, gzip, deflate, br and zstd, and fail on any other, such as the xz their own
 * `log-compression=xz` uploads (protocol.md, Clients tested).
 */
export function acceptsStoredEncoding(headers: IncomingHttpHeaders, encoding: string): boolean {
  if (headers['accept-encoding'] === undefined) return true;
  return new Negotiator({ headers }).encoding([encoding]) === encoding;
}
