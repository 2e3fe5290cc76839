-- A user being removed with everything they hold (`ssp user remove --purge`): set in the
-- same transaction that disables them and marks their containers for deletion, and read
-- back after a restart, so whatever finishes the removal picks it up again. The row itself
-- goes once nothing of theirs is left.
ALTER TABLE users ADD COLUMN departing_at INTEGER;
