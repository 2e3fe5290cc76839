-- The SSH gateway's audit log: one row per channel (a shell, a command, sftp, or a forwarded
-- connection), with who, where from, into which container, when, and how many bytes.
-- Names are kept as text, not foreign keys: the log outlives users and containers.
CREATE TABLE gateway_sessions (
    id          INTEGER PRIMARY KEY,
    user        TEXT NOT NULL,
    container   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    bytes_in    INTEGER NOT NULL DEFAULT 0,
    bytes_out   INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER
);
CREATE INDEX gateway_sessions_by_user ON gateway_sessions (user, started_at);
