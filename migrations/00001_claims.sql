-- +goose Up
CREATE TABLE claims (
    id            uuid        PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    net_fee_cents bigint      NOT NULL,
    line_count    integer     NOT NULL CHECK (line_count > 0)
);

-- One row per service line. Money is in integer cents. provider_npi uses the
-- "C" collation so that ordering by it is byte order, the order Redis uses
-- for members with equal scores.
CREATE TABLE claim_lines (
    claim_id                 uuid    NOT NULL REFERENCES claims (id) ON DELETE CASCADE,
    line_no                  integer NOT NULL,
    service_date             date    NOT NULL,
    submitted_procedure      text    NOT NULL,
    quadrant                 text,
    plan_group               text    NOT NULL,
    subscriber               text    NOT NULL,
    provider_npi             text    COLLATE "C" NOT NULL,
    provider_fees_cents      bigint  NOT NULL CHECK (provider_fees_cents >= 0),
    allowed_fees_cents       bigint  NOT NULL CHECK (allowed_fees_cents >= 0),
    member_coinsurance_cents bigint  NOT NULL CHECK (member_coinsurance_cents >= 0),
    member_copay_cents       bigint  NOT NULL CHECK (member_copay_cents >= 0),
    net_fee_cents            bigint  NOT NULL,
    PRIMARY KEY (claim_id, line_no)
);

CREATE INDEX claim_lines_provider_npi ON claim_lines (provider_npi);

-- The exact running total of net fees per provider, updated in the same
-- transaction as the lines. version grows by one with every change, so a
-- Redis write can tell a newer total from an older one.
CREATE TABLE provider_totals (
    provider_npi        text        COLLATE "C" PRIMARY KEY,
    total_net_fee_cents bigint      NOT NULL,
    version             bigint      NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Serves the Postgres fallback of top-providers in O(limit): the same order
-- as ZREVRANGE (score descending, then member descending).
CREATE INDEX provider_totals_rank ON provider_totals (total_net_fee_cents DESC, provider_npi DESC);

-- +goose Down
DROP TABLE provider_totals;
DROP TABLE claim_lines;
DROP TABLE claims;
