-- +goose Up
-- How many stored claims have a line of each provider (GET /providers/{npi}):
-- kept with the total, in the same upsert; a reversal takes its claim away.
ALTER TABLE provider_totals ADD COLUMN claims bigint NOT NULL DEFAULT 0;
UPDATE provider_totals t SET claims = l.claims
FROM (SELECT l.provider_npi, count(DISTINCT l.claim_id) AS claims
      FROM claim_lines l JOIN claims c ON c.id = l.claim_id
      WHERE c.status <> 'reversed'
      GROUP BY l.provider_npi) l
WHERE l.provider_npi = t.provider_npi;
-- The ranking in Redis carries each provider's count from now on: a new
-- epoch makes the reconciler rebuild it (lookups answer from Postgres
-- meanwhile).
UPDATE ranking_epoch SET epoch = gen_random_uuid();

-- +goose Down
ALTER TABLE provider_totals DROP COLUMN claims;
UPDATE ranking_epoch SET epoch = gen_random_uuid();
