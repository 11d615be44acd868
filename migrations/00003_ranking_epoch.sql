-- +goose Up
-- Names this database's ranking. The Redis completeness marker holds it, so
-- a Redis that outlived a recreated database (and holds its totals) is seen
-- as not this database's and rebuilt.
CREATE TABLE ranking_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     uuid    NOT NULL DEFAULT gen_random_uuid()
);
INSERT INTO ranking_epoch DEFAULT VALUES;

-- +goose Down
DROP TABLE ranking_epoch;
