-- +goose NO TRANSACTION
-- +goose Up
-- GET /claims?provider_npi=N finds a client's claims with a line of N, newest
-- first: claim ids are UUIDv7, so this index lists a provider's claims in the
-- order they were received, and a page is a range of it (keyset). Built
-- without locking the table against the claims being written meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS claim_lines_provider_claim ON claim_lines (provider_npi, claim_id DESC);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS claim_lines_provider_claim;
