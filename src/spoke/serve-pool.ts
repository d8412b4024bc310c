import { ServeConnection, type ServeConnectionOptions } from './serve-connection.js';

/**
 * The spoke's `nix-store --serve` processes, one per build running at once, kept between jobs
 * so a job starts no Nix process. A connection that broke or was killed (a cancelled or timed
 * out build) is dropped and a fresh one started for the next job.
 */
export class ServePool {
  readonly #options: ServeConnectionOptions;
  readonly #idle: ServeConnection[] = [];
  readonly #all = new Set<ServeConnection>();
  #closed = false;

  constructor(options: ServeConnectionOptions) {
    this.#options = options;
  }

  async acquire(): Promise<ServeConnection> {
    if (this.#closed) throw new Error('the spoke is stopping');
    for (let conn = this.#idle.pop(); conn; conn = this.#idle.pop()) {
      if (conn.alive) return conn;
      this.#all.delete(conn);
    }
    const conn = await ServeConnection.open(this.#options);
    this.#all.add(conn);
    void conn.exited.then(() => this.#all.delete(conn));
    return conn;
  }

  release(conn: ServeConnection): void {
    if (conn.alive && !this.#closed) this.#idle.push(conn);
    else conn.kill();
  }

  /** Kills every connection and the builds they run. */
  killAll(): void {
    for (const conn of this.#all) conn.kill();
  }

  /** Ends idle connections; connections in use are ended when released. */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = this.#idle.splice(0);
    await Promise.all(idle.map((c) => c.close()));
  }
}
