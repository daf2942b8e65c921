-- The PostgreSQL queue (src/queue/postgres/): the same events, attempts and states as the SQLite
-- queue (src/queue/sqlite/schema.rs), plus the lock rows that serialize events across replicas.
-- All times are unix milliseconds from the bot's clock.

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key      TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    headers         TEXT    NOT NULL, -- JSON array of [name, value]
    body            BYTEA   NOT NULL,
    received_at     BIGINT  NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    locked_until    BIGINT,
    -- Fencing token: each claim increments it; renew, ack, fail and release present it.
    lease_token     BIGINT  NOT NULL DEFAULT 0,
    serial_key      TEXT,
    last_error      TEXT,
    done_at         BIGINT,
    dead_at         BIGINT,
    replays         INTEGER NOT NULL DEFAULT 0,
    replayed_at     BIGINT
);
-- Claims walk the pending events in id order.
CREATE INDEX events_pending_claim ON events (id) WHERE state = 'pending';
CREATE INDEX events_state_lease ON events (state, locked_until);
CREATE INDEX events_done_at ON events (done_at) WHERE state = 'done';
CREATE INDEX events_dead_at ON events (dead_at) WHERE state = 'dead';
CREATE INDEX events_received_kind ON events (received_at, kind);

CREATE TABLE attempts (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id BIGINT  NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    attempt  INTEGER NOT NULL,
    at       BIGINT  NOT NULL,
    error    TEXT    NOT NULL
);
CREATE INDEX attempts_event ON attempts (event_id);

-- One row per serialization key (one MR, one issue, the policies): the claim that takes an
-- event with that key takes this row's lease in the same transaction (`FOR UPDATE SKIP LOCKED`,
-- so claims never wait for each other); ack, fail and release give it back. The row is made by
-- the enqueue, so a claim never has to insert one under contention.
CREATE TABLE serial_locks (
    serial_key   TEXT   PRIMARY KEY,
    event_id     BIGINT,
    lease_token  BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE meta (
    key   TEXT  PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Pruning idle lock rows asks whether a key still has pending events.
CREATE INDEX events_pending_serial ON events (serial_key) WHERE state = 'pending';
