-- +goose Up
-- A claim_id belongs to the client that sent it: two clients may use the
-- same one, and neither sees the other's claim through it.
ALTER TABLE claims ADD COLUMN client_scope text NOT NULL DEFAULT '';
-- The fingerprint of the normalized claim, so a claim_id sent again with
-- different content is refused instead of silently answered with the old claim.
ALTER TABLE claims ADD COLUMN request_hash bytea;
DROP INDEX claims_external_id;
CREATE UNIQUE INDEX claims_scope_external_id ON claims (client_scope, external_id)
    WHERE external_id IS NOT NULL;

-- +goose Down
DROP INDEX claims_scope_external_id;
CREATE UNIQUE INDEX claims_external_id ON claims (external_id) WHERE external_id IS NOT NULL;
ALTER TABLE claims DROP COLUMN request_hash;
ALTER TABLE claims DROP COLUMN client_scope;
