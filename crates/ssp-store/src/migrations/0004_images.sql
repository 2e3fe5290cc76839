-- Images and clones: images users published from their containers, and where a container
-- comes from when it is not made from an image (a copy of another container, an import).
-- Append-only: never edit a migration that has shipped; add the next one.

-- An image a user published. `alias` is the LXD image alias, namespaced per installation
-- and owner (ssp_<platform>_<owner>_<name>) so no user-chosen name can reach another's.
CREATE TABLE images (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users (id),
    name        TEXT    NOT NULL,
    alias       TEXT    NOT NULL UNIQUE,
    fingerprint TEXT    NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    public      INTEGER NOT NULL CHECK (public IN (0, 1)),
    source      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (owner_id, name)
) STRICT;

-- NULL: made from `image`; 'copy:<uid>': a copy of that container; 'import': imported from
-- a backup archive (the import makes the instance, the reconciler then keeps it).
ALTER TABLE containers ADD COLUMN source TEXT;
