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
-- here in its own transaction; the relay publishes the unsent ones in seq
-- order, with publisher confirms, and marks them sent only after the
-- confirm. body is the event's JSON (docs/events.md).
CREATE TABLE outbox (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    routing_key text        NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

-- +goose Down
DROP TABLE outbox;
ALTER TABLE claims
    DROP COLUMN status, DROP COLUMN reversed_at, DROP COLUMN reversal_reason,
    DROP COLUMN reversal_detail, DROP COLUMN replaces, DROP COLUMN replaced_by;
