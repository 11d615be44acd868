-- +goose Up
-- A provider whose claims in a board were all reversed leaves that board:
-- its row stays (claims 0, total 0, its version going on, so that Redis's
-- versioned writes keep their order), but no list or rank counts it. The
-- rank indexes hold only the rows that are listed.
DROP INDEX provider_totals_rank;
CREATE INDEX provider_totals_rank ON provider_totals (total_net_fee_cents DESC, provider_npi DESC) WHERE claims > 0;
DROP INDEX board_totals_rank;
CREATE INDEX board_totals_rank ON board_totals (board, total_net_fee_cents DESC, provider_npi DESC) WHERE claims > 0;
-- Redis drops such providers from its sorted sets from now on: a new epoch
-- makes the reconciler rebuild the ranking (lookups answer from Postgres
-- meanwhile).
UPDATE ranking_epoch SET epoch = gen_random_uuid();

-- +goose Down
DROP INDEX provider_totals_rank;
CREATE INDEX provider_totals_rank ON provider_totals (total_net_fee_cents DESC, provider_npi DESC);
DROP INDEX board_totals_rank;
CREATE INDEX board_totals_rank ON board_totals (board, total_net_fee_cents DESC, provider_npi DESC);
UPDATE ranking_epoch SET epoch = gen_random_uuid();
