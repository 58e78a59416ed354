-- Rate limits that hold across every node: one token bucket per key
-- ('writes:<user id>', 'sign-ins:<address>'), taken by stoa_take_token.
--
-- UNLOGGED: a bucket needs no durability (a crash that forgets it only
-- forgives a few requests), and a transaction that changes only unlogged
-- tables writes no WAL, so taking a token costs no disk sync.
CREATE UNLOGGED TABLE rate_limits (
    key        text COLLATE "C" PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX rate_limits_idle ON rate_limits (updated_at);

-- Takes one token from the bucket named `bucket` (`burst` at once, refilled at
-- `per_second`). Returns 0 when it was taken, else the seconds until one
-- is free. The row lock makes concurrent takers (on any node) queue.
CREATE FUNCTION stoa_take_token(bucket text, per_second double precision, burst double precision)
RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := clock_timestamp();
    available double precision;
BEGIN
    INSERT INTO rate_limits (key, tokens, updated_at)
    VALUES (bucket, burst, at)
    ON CONFLICT ON CONSTRAINT rate_limits_pkey DO NOTHING;
    SELECT least(burst, r.tokens + greatest(0, extract(epoch FROM at - r.updated_at)) * per_second)
    INTO available
    FROM rate_limits r WHERE r.key = bucket
    FOR UPDATE;
    IF available >= 1 THEN
        UPDATE rate_limits r SET tokens = available - 1, updated_at = at
        WHERE r.key = bucket;
        RETURN 0;
    END IF;
    UPDATE rate_limits r SET tokens = available, updated_at = at
    WHERE r.key = bucket;
    RETURN (1 - available) / per_second;
END
$$;
