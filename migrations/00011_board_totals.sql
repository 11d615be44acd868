-- +goose Up
-- The boards beside the all-time ranking of every plan (provider_totals): a
-- line counts toward the day, ISO week, month and year of its service date,
-- and toward its plan/group's all-time and month boards. line_boards names
-- them as claim.Board.Key does in Go ("d:2026-11-28", "w:2026-W48",
-- "m:2026-11", "y:2026", "a|g:<plan>", "m:2026-11|g:<plan>"); the backfill
-- below and claimd reconcile --audit compute boards from lines with it.
-- +goose StatementBegin
CREATE FUNCTION line_boards(d date, plan text) RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ARRAY['d:' || to_char(d, 'YYYY-MM-DD'), 'w:' || to_char(d, 'IYYY-"W"IW'), 'm:' || to_char(d, 'YYYY-MM'),
                 'y:' || to_char(d, 'YYYY'), 'a|g:' || plan, 'm:' || to_char(d, 'YYYY-MM') || '|g:' || plan]
$$;
-- +goose StatementEnd

-- One row per board and provider: its total and count of stored claims,
-- moved in the same transaction as the lines and provider_totals.
CREATE TABLE board_totals (
    board               text        COLLATE "C" NOT NULL,
    provider_npi        text        COLLATE "C" NOT NULL,
    total_net_fee_cents bigint      NOT NULL,
    claims              bigint      NOT NULL,
    version             bigint      NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (board, provider_npi)
);

-- A board's list and a provider's rank in it, in the order of the
-- ranking: total descending, then NPI descending.
CREATE INDEX board_totals_rank ON board_totals (board, total_net_fee_cents DESC, provider_npi DESC);

INSERT INTO board_totals (board, provider_npi, total_net_fee_cents, claims, version)
SELECT b.board, l.provider_npi,
       sum(CASE WHEN c.status = 'reversed' THEN 0 ELSE l.net_fee_cents END),
       count(DISTINCT l.claim_id) FILTER (WHERE c.status <> 'reversed'), 1
FROM claim_lines l JOIN claims c ON c.id = l.claim_id
CROSS JOIN LATERAL unnest(line_boards(l.service_date, l.plan_group)) AS b (board)
GROUP BY b.board, l.provider_npi;

-- +goose Down
DROP TABLE board_totals;
DROP FUNCTION line_boards(date, text);
