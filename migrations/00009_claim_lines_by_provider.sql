-- +goose NO TRANSACTION
-- +goose Up
-- GET /claims?provider_npi=N finds a client's claims with a line of N, newest
-- first: claim ids are UUIDv7, so this index lists a provider's claims in the
-- order they were received, and a page is a range of it (keyset). Built
-- without locking the table against the claims being written meanwhile.
--
-- A CONCURRENTLY build that failed (cancelled, a restart) leaves an invalid
-- index of that name, which IF NOT EXISTS would keep: drop it first.
-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE c.relname = 'claim_lines_provider_claim' AND NOT i.indisvalid) THEN
        DROP INDEX claim_lines_provider_claim;
    END IF;
END
$$;
-- +goose StatementEnd
CREATE INDEX CONCURRENTLY IF NOT EXISTS claim_lines_provider_claim ON claim_lines (provider_npi, claim_id DESC);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS claim_lines_provider_claim;
