-- +goose Up
-- A provider's total stays where a Redis score (a double) holds it exactly,
-- so the ranking orders totals exactly: within +-(2^53 - 1) cents. claimd
-- refuses a claim that would take a total past it before this check fires;
-- the check keeps the promise whatever writes the table.
ALTER TABLE provider_totals ADD CONSTRAINT provider_totals_exact_in_redis
    CHECK (total_net_fee_cents BETWEEN -9007199254740991 AND 9007199254740991);

-- +goose Down
ALTER TABLE provider_totals DROP CONSTRAINT provider_totals_exact_in_redis;
