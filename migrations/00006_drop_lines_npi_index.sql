-- +goose Up
-- No query that runs looks claim lines up by provider: the ranking reads
-- provider_totals, and the audit (claimd reconcile --audit) sums every line
-- anyway. The index cost a B-tree insertion per line on every claim.
DROP INDEX claim_lines_provider_npi;

-- +goose Down
CREATE INDEX claim_lines_provider_npi ON claim_lines (provider_npi);
