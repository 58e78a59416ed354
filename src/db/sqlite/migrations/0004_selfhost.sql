-- Positions that must resync: a restore from a backup made at outbox id
-- `after`, onto a database that had handed out ids up to `through`, moves
-- the id sequence past `through` and records the range here. A client
-- holding a position in (after, through] saw events the restore took
-- away, so it reloads its snapshot instead of resuming; no id is ever
-- handed out twice.
CREATE TABLE outbox_gaps (
    after       INTEGER NOT NULL,
    through     INTEGER NOT NULL,
    restored_at TEXT NOT NULL,
    CHECK (through > after)
);
