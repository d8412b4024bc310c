/**
 * Version of the hub <-> spoke contract (job data, results, heartbeats, log and cancel keys).
 * A spoke announces it in its heartbeat; the hub ignores spokes of another major version.
 */
export const PROTOCOL_VERSION = 1;
