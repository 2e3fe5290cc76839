-- Share groups: each read-write share gets a group from the delegated id block
-- (`ssp_core::idblock`), which owns its host folder. Numbers are never reused
-- (AUTOINCREMENT): a removed share's folder keeps its group and ACLs on the host, and a
-- later share with the same number would otherwise gain access to it.
CREATE TABLE share_groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    share      TEXT    NOT NULL,   -- the share's name when the group was given, for the record
    created_at INTEGER NOT NULL
) STRICT;

-- NULL for read-only shares, and for shares added before groups existed (their host
-- folders were never prepared; remove and add them again to give them one).
ALTER TABLE shares ADD COLUMN group_id INTEGER REFERENCES share_groups (id);
