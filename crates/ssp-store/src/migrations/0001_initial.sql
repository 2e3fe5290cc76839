-- Users, their SSH keys and API tokens, their containers, and the journal.
-- Append-only: never edit a migration that has shipped; add the next one.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    role            TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    password_hash   TEXT,
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    max_containers  INTEGER NOT NULL CHECK (max_containers >= 0),
    max_cpus        INTEGER NOT NULL CHECK (max_cpus >= 0),
    max_memory      INTEGER NOT NULL CHECK (max_memory >= 0),
    max_disk        INTEGER NOT NULL CHECK (max_disk >= 0),
    max_gpus        INTEGER NOT NULL CHECK (max_gpus >= 0),
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE ssh_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    UNIQUE (user_id, name)
) STRICT;

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    UNIQUE (user_id, name)
) STRICT;

CREATE TABLE containers (
    id              INTEGER PRIMARY KEY,
    uid             TEXT    NOT NULL UNIQUE,
    owner_id        INTEGER NOT NULL REFERENCES users (id),
    name            TEXT    NOT NULL,
    image           TEXT    NOT NULL,
    cpus            INTEGER NOT NULL CHECK (cpus > 0),
    memory          INTEGER NOT NULL CHECK (memory > 0),
    disk            INTEGER NOT NULL CHECK (disk > 0),
    desired_state   TEXT    NOT NULL CHECK (desired_state IN ('running', 'stopped')),
    phase           TEXT    NOT NULL CHECK (phase IN ('creating', 'ready', 'deleting', 'lost')),
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    UNIQUE (owner_id, name),
    UNIQUE (owner_id, idempotency_key)
) STRICT;

CREATE TABLE journal (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT,
    action  TEXT    NOT NULL,
    object  TEXT    NOT NULL,
    detail  TEXT
) STRICT;
