/**
 * The cache database's schema, as an ordered list of migrations. `meta.schema_version` records how many
 * have been applied; a database from a newer anneal (a higher version) is refused rather than guessed at.
 *
 * Tables, after Shake's records (STYLE.md point 6):
 * - sessions:   one row per `anneal run` (which recipe, when, how it ended)
 * - runs:       one row per step execution, with its full key trace, metrics, log path and status
 * - results:    the constructive trace: step key -> output artifact; any key ever built can be restored
 * - steps:      per (recipe, step id), the last successful state: key, trace, output, the session that
 *               last built it and the session in which its output last *changed* (early cutoff)
 * - artifacts:  every committed artifact directory in the store
 * - file_stats: (path, size, mtime, inode) -> content hash, so unchanged big sources are not rehashed
 * - locks:      step keys being built right now, by which process (two runs never build one key twice)
 *
 * Migration 2 (the store you can trust, issue 10):
 * - artifacts.manifest: JSON [[rel, size, sha256, ino, mtimeMs, ctimeMs], ...] written at commit; `has()`
 *               checks it with stats only (cache/manifest.ts), so a partial or tampered copy is never used
 * - processes:  anneal processes holding locks or leases, with their host and a heartbeat; a holder on
 *               another host is dead once its heartbeat is older than the expiry (cache/liveness.ts)
 * - leases:     artifacts a live run will read, restore or produce; gc never deletes a leased artifact
 * - runs.host, sessions.host: where a run happened, so crash recovery never judges a foreign pid
 *
 * Migration 3 (presence checks without reading directories, issue 12):
 * - artifacts.dirs: JSON [[rel, ino, mtimeMs, ctimeMs], ...], every directory of the artifact ("" its
 *               root) as it was once in place; while they are unchanged no file can have been added or
 *               removed, so `has()` stats instead of listing. Null (older rows): the next check lists the
 *               directories once and records them.
 *
 * Migration 4 (a null rerun of 10,000 steps, issue 12):
 * - lease_sets: many leases of one live run in one row, `hashes` a JSON array of artifact hashes (a
 *               plan leases every cached output at once: 10,000 `leases` rows, written and deleted
 *               again, were a tenth of a null rerun). `leases` keeps the single ones (a commit's output).
 */
export const migrations: ReadonlyArray<string> = [
  `
  CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    recipe TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    pid INTEGER NOT NULL,
    argv TEXT NOT NULL
  );
  CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    recipe TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    seconds REAL,
    output TEXT,
    metrics TEXT NOT NULL DEFAULT '{}',
    log_path TEXT,
    trace TEXT NOT NULL,
    error TEXT,
    pid INTEGER NOT NULL,
    gpus TEXT NOT NULL DEFAULT '[]'
  );
  CREATE INDEX runs_by_step ON runs(recipe, step, id);
  CREATE INDEX runs_by_status ON runs(status);
  CREATE TABLE results (
    key TEXT PRIMARY KEY,
    output TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    seconds REAL NOT NULL,
    created_at REAL NOT NULL
  );
  CREATE TABLE steps (
    recipe TEXT NOT NULL,
    step TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    trace TEXT NOT NULL,
    output TEXT NOT NULL,
    run_id INTEGER,
    built_session INTEGER NOT NULL,
    changed_session INTEGER NOT NULL,
    seconds REAL NOT NULL,
    fingerprint TEXT,
    PRIMARY KEY (recipe, step)
  );
  CREATE TABLE artifacts (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    files INTEGER NOT NULL,
    created_at REAL NOT NULL,
    used_at REAL NOT NULL
  );
  CREATE TABLE file_stats (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns TEXT NOT NULL,
    ino TEXT NOT NULL,
    hash TEXT NOT NULL
  );
  CREATE TABLE locks (
    key TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    step TEXT NOT NULL,
    recipe TEXT NOT NULL,
    acquired_at REAL NOT NULL
  );
  `,
  `
  ALTER TABLE artifacts ADD COLUMN manifest TEXT;
  ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
  ALTER TABLE sessions ADD COLUMN host TEXT NOT NULL DEFAULT '';
  CREATE TABLE processes (
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    PRIMARY KEY (pid, host)
  );
  CREATE TABLE leases (
    hash TEXT NOT NULL,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    PRIMARY KEY (hash, owner)
  );
  CREATE INDEX leases_by_owner ON leases(owner);
  `,
  `
  ALTER TABLE artifacts ADD COLUMN dirs TEXT;
  `,
  `
  CREATE TABLE lease_sets (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    hashes TEXT NOT NULL
  );
  CREATE INDEX lease_sets_by_owner ON lease_sets(owner);
  `
]
