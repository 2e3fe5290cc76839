-- GPUs: the host's inventory as last seen, the admin's marks on it, each user's allowlist,
-- and leases (a container holding a GPU, from its grant until it ends; ended leases stay for
-- GPU-hour accounting).

CREATE TABLE gpus (
    idx          INTEGER PRIMARY KEY CHECK (idx >= 0),
    uuid         TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    memory       INTEGER NOT NULL CHECK (memory >= 0),
    pci          TEXT,
    emulated     INTEGER NOT NULL CHECK (emulated IN (0, 1)),
    present      INTEGER NOT NULL DEFAULT 1 CHECK (present IN (0, 1)),
    shared       INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    reserved_for INTEGER REFERENCES users (id) ON DELETE SET NULL
) STRICT;

CREATE TABLE gpu_allowlists (
    user_id  INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    indices  TEXT,
    models   TEXT
) STRICT;

CREATE TABLE gpu_leases (
    id            INTEGER PRIMARY KEY,
    gpu           INTEGER NOT NULL REFERENCES gpus (idx),
    container_uid TEXT    NOT NULL,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    exclusive     INTEGER NOT NULL CHECK (exclusive IN (0, 1)),
    granted_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    ended_at      INTEGER,
    end_reason    TEXT
) STRICT;

-- The allocator decides inside one write transaction; these make a double booking impossible
-- even if a bug slipped past it.
CREATE UNIQUE INDEX gpu_leases_one_exclusive_holder ON gpu_leases (gpu) WHERE ended_at IS NULL AND exclusive = 1;
CREATE UNIQUE INDEX gpu_leases_once_per_container ON gpu_leases (gpu, container_uid) WHERE ended_at IS NULL;
CREATE INDEX gpu_leases_active ON gpu_leases (container_uid) WHERE ended_at IS NULL;
