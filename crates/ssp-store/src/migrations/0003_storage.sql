-- Storage: snapshots and their schedules, shared host folders, persistent homes.
-- Append-only: never edit a migration that has shipped; add the next one.

-- What ssp knows of each container snapshot beyond LXD's own record: whether a person
-- protected it (never pruned) and whether the scheduler took it.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY,
    container_id INTEGER NOT NULL REFERENCES containers (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    protected    INTEGER NOT NULL CHECK (protected IN (0, 1)),
    scheduled    INTEGER NOT NULL CHECK (scheduled IN (0, 1)),
    created_at   INTEGER NOT NULL,
    UNIQUE (container_id, name)
) STRICT;

CREATE TABLE snapshot_schedules (
    container_id INTEGER PRIMARY KEY REFERENCES containers (id) ON DELETE CASCADE,
    every_secs   INTEGER NOT NULL CHECK (every_secs >= 60),
    keep_last    INTEGER NOT NULL CHECK (keep_last >= 0),
    keep_daily   INTEGER NOT NULL CHECK (keep_daily >= 0),
    keep_weekly  INTEGER NOT NULL CHECK (keep_weekly >= 0),
    last_run_at  INTEGER
) STRICT;

-- Host folders an admin shares into containers: with every user (all_users = 1) or with
-- the users in share_users.
CREATE TABLE shares (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    host_path  TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    read_only  INTEGER NOT NULL CHECK (read_only IN (0, 1)),
    all_users  INTEGER NOT NULL CHECK (all_users IN (0, 1)),
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE share_users (
    share_id INTEGER NOT NULL REFERENCES shares (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (share_id, user_id)
) STRICT;

-- A user's persistent home volume; `phase` tracks the storage worker's progress as
-- containers' does the reconciler's.
CREATE TABLE homes (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id),
    size       INTEGER NOT NULL CHECK (size > 0),
    phase      TEXT    NOT NULL CHECK (phase IN ('creating', 'ready', 'deleting')),
    created_at INTEGER NOT NULL
) STRICT;
