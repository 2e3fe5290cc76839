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

-- Each container's sshd host key, read once through LXD when the container is first set up
-- and never replaced: `ssp ssh-config` hands it to clients so a ProxyJump to the container's
-- own sshd is verified end to end, never trusted on first use.
CREATE TABLE container_host_keys (
    container_uid TEXT PRIMARY KEY REFERENCES containers (uid) ON DELETE CASCADE,
    public_key    TEXT NOT NULL,
    pinned_at     INTEGER NOT NULL
);
