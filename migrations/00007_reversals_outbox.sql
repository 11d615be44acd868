-- +goose Up
-- A claim is stored, or reversed (voided, or replaced by a correction): it
-- and its lines are kept, and a reversal takes its net fees out of the
-- totals. replaced_by names the claim that corrected it; replaces, the
-- claim a correction replaced.
ALTER TABLE claims
    ADD COLUMN status          text NOT NULL DEFAULT 'stored' CHECK (status IN ('stored', 'reversed')),
    ADD COLUMN reversed_at     timestamptz,
    ADD COLUMN reversal_reason text,
    ADD COLUMN reversal_detail text,
    ADD COLUMN replaces        uuid,
    ADD COLUMN replaced_by     uuid;

-- The transactional outbox: every transaction that stores or reverses
-- claims writes their events here as one row, in the same transaction (a
-- group commit of 28 claims writes one row, not 28); the relay publishes the
-- rows in seq order, each event its own message, with publisher confirms,
-- and deletes a row only after the broker confirmed all its events, so the
-- table holds just what waits. bodies are the events' JSON
-- (docs/events.md), event_ids and routing_keys theirs, in order.
CREATE TABLE outbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_ids    uuid[]      NOT NULL,
    routing_keys text[]      NOT NULL,
    bodies       bytea[]     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE outbox;
ALTER TABLE claims
    DROP COLUMN status, DROP COLUMN reversed_at, DROP COLUMN reversal_reason,
    DROP COLUMN reversal_detail, DROP COLUMN replaces, DROP COLUMN replaced_by;
