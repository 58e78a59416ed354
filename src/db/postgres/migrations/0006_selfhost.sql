-- Positions that must resync after a restore (see stoa_restored): a
-- client holding a position in (after, through] saw events the restore
-- took away, so it reloads its snapshot instead of resuming.
CREATE TABLE outbox_gaps (
    after       bigint NOT NULL,
    through     bigint NOT NULL,
    restored_at timestamptz(3) NOT NULL DEFAULT clock_timestamp(),
    CHECK (through > after)
);

-- Run once after pg_restore, with the newest outbox id the replaced
-- database had handed out (`SELECT last FROM outbox_counter` on it, or
-- the highest lastEventId any client may hold): moves the counter past it
-- so no id is handed out twice, and records the ids between the backup's
-- newest and it as needing resync. Returns the counter's new value.
CREATE FUNCTION stoa_restored(previous_last bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    restored bigint;
BEGIN
    SELECT last INTO restored FROM outbox_counter FOR UPDATE;
    IF previous_last > restored THEN
        INSERT INTO outbox_gaps (after, through) VALUES (restored, previous_last);
        UPDATE outbox_counter SET last = previous_last;
        RETURN previous_last;
    END IF;
    RETURN restored;
END
$$;
