-- Whether a container offers its owner a desktop (`ssp desktop enable`): the reconciler
-- installs the session service inside while it is 1 and removes it once it is 0 again.
ALTER TABLE containers ADD COLUMN desktop INTEGER NOT NULL DEFAULT 0;
