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
  `
]
