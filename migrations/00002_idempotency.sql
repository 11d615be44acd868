-- +goose Up
-- The payment service's own identifier of a claim: a resubmission with the
-- same one returns the stored claim instead of storing a second.
ALTER TABLE claims ADD COLUMN external_id text;
CREATE UNIQUE INDEX claims_external_id ON claims (external_id) WHERE external_id IS NOT NULL;

-- Idempotency-Key records. A key is first leased (lease_token, lease_until)
-- in a transaction of its own, so a concurrent retry can see it is in flight;
-- the claim's transaction then records the outcome. A lease left behind by a
-- crash expires and the key can be used again.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,  -- the client the key belongs to
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,  -- of the normalized claim
    lease_token  uuid,
    lease_until  timestamptz,
    claim_id     uuid,                  -- set when the claim committed
    created      boolean,               -- true: stored by this key's request; false: found existing
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);

-- The cheap reconciliation pass reads the totals changed since its last pass.
CREATE INDEX provider_totals_updated_at ON provider_totals (updated_at);

-- +goose Down
DROP INDEX provider_totals_updated_at;
DROP TABLE idempotency_keys;
DROP INDEX claims_external_id;
ALTER TABLE claims DROP COLUMN external_id;
