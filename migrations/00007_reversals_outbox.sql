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

-- The transactional outbox: every stored or reversed claim writes its event
-- here in its own transaction; the relay publishes them in seq order, with
-- publisher confirms, and deletes each only after the broker confirmed it,
-- so the table holds just what waits. body is the event's JSON
-- (docs/events.md). One index, the primary key: each event costs one heap
-- tuple and one index entry to write, and one delete.
CREATE TABLE outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL,
    routing_key text        NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE outbox;
ALTER TABLE claims
    DROP COLUMN status, DROP COLUMN reversed_at, DROP COLUMN reversal_reason,
    DROP COLUMN reversal_detail, DROP COLUMN replaces, DROP COLUMN replaced_by;
