-- Schema 1: the SQLite store as kawaii 0.1.0 (before schema versions) created it, verbatim.
-- Frozen: a new store is this and every migration in sqlite.rs, and a store the first release
-- wrote must keep migrating (tests in sqlite.rs).
CREATE TABLE IF NOT EXISTS state (
    revision INTEGER PRIMARY KEY,
    document TEXT NOT NULL,
    at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    changes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
