package main

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Preloaded data: claims of four lines, ids in order (as claimd's UUIDv7
// are), lines spread evenly over the providers, provider_totals equal to the
// sum of the lines, exactly as ingestion would leave them. Line k (= claim *
// 4 + line_no) goes to provider k*7919 mod P (7919 is prime: a bijection on
// residues, so 1M lines over 1M providers give each one line and 10M give
// each ten); its fee is drawn from k too.
const (
	preloadClaimsSQL = `
INSERT INTO claims (id, received_at, net_fee_cents, line_count)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, now(), s.net, 4
FROM generate_series($1::bigint, $2::bigint) g,
     LATERAL (SELECT sum(f - f * 3 / 5) AS net
              FROM generate_series(0, 3) l, LATERAL (SELECT 2000 + ((g * 4 + l) * 7907) % 98000 AS f) x) s`
	preloadLinesSQL = `
INSERT INTO claim_lines (claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group, subscriber,
    provider_npi, provider_fees_cents, allowed_fees_cents, member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, l, date '2025-01-01' + (g % 365)::int,
       (ARRAY['D0120', 'D0180', 'D1110', 'D2740'])[1 + (g + l) % 4], NULL, 'GRP-' || lpad((g % 10000)::text, 4, '0'),
       lpad((g * 7919 % 10000000000)::text, 10, '0'), '2' || lpad(((g * 4 + l) * 7919 % $3::bigint)::text, 9, '0'),
       f, f * 3 / 5, 0, 0, f - f * 3 / 5
FROM generate_series($1::bigint, $2::bigint) g, generate_series(0, 3) l,
     LATERAL (SELECT 2000 + ((g * 4 + l) * 7907) % 98000 AS f) x`
	// The preloaded providers' NPIs begin with 2, claimbench's with 1.
	preloadTotalsSQL = `
INSERT INTO provider_totals AS t (provider_npi, total_net_fee_cents, claims, version, updated_at)
SELECT provider_npi, sum(net_fee_cents), count(DISTINCT claim_id), 1, now() FROM claim_lines
WHERE starts_with(provider_npi, '2') GROUP BY provider_npi
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = excluded.total_net_fee_cents, claims = excluded.claims, version = t.version + 1, updated_at = now()
WHERE (t.total_net_fee_cents, t.claims) <> (excluded.total_net_fee_cents, excluded.claims)`
	// The preloaded lines' boards (migration 00011's line_boards names them),
	// so that period lookups and the ranking's memory count them.
	preloadBoardsSQL = `
INSERT INTO board_totals AS t (board, provider_npi, total_net_fee_cents, claims, version, updated_at)
SELECT b.board, l.provider_npi, sum(l.net_fee_cents), count(DISTINCT l.claim_id), 1, now()
FROM claim_lines l CROSS JOIN LATERAL unnest(line_boards(l.service_date, l.plan_group)) AS b (board)
WHERE starts_with(l.provider_npi, '2') GROUP BY 1, 2
ON CONFLICT (board, provider_npi) DO UPDATE
SET total_net_fee_cents = excluded.total_net_fee_cents, claims = excluded.claims, version = t.version + 1, updated_at = now()
WHERE (t.total_net_fee_cents, t.claims) <> (excluded.total_net_fee_cents, excluded.claims)`
)

// preloadTo adds claim lines until the database holds `lines` preloaded ones.
func (s *suite) preloadTo(ctx context.Context, st *stageResult, lines int64) error {
	first, last := s.preloaded/4+1, lines/4
	if last < first {
		return nil
	}
	s.logf("preloading %d claim lines (%d claims) over %d providers", (last-first+1)*4, last-first+1, s.sc.Providers)
	started := time.Now()
	const chunk = 250_000 // claims per statement
	type span struct{ from, to int64 }
	spans := make(chan span)
	go func() {
		defer close(spans)
		for from := first; from <= last; from += chunk {
			spans <- span{from, min(from+chunk-1, last)}
		}
	}()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		fkOff    atomic.Bool
	)
	for range 2 { // two statements at a time: one per core
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, s.dbURL)
			if err == nil {
				defer conn.Close(context.Background())
				// The generated lines reference claims inserted just before by
				// construction; as superuser, skip the per-row foreign-key checks.
				if _, e := conn.Exec(ctx, "SET session_replication_role = replica"); e == nil {
					fkOff.Store(true)
				}
			}
			for sp := range spans {
				if err == nil {
					_, err = conn.Exec(ctx, preloadClaimsSQL, sp.from, sp.to)
				}
				if err == nil {
					_, err = conn.Exec(ctx, preloadLinesSQL, sp.from, sp.to, s.sc.Providers)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("preload: %w", firstErr)
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range []string{preloadTotalsSQL, preloadBoardsSQL, "VACUUM ANALYZE provider_totals", "VACUUM ANALYZE board_totals",
		"ANALYZE claims", "ANALYZE claim_lines"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("preload: %s: %w", strings.Fields(q)[0], err)
		}
	}
	s.preloaded = last * 4
	st.PreloadSeconds = time.Since(started).Seconds()
	st.PreloadNote = "bulk INSERT ... SELECT generate_series, 2 connections, then provider_totals and board_totals from the lines (GROUP BY) and VACUUM ANALYZE"
	if !fkOff.Load() {
		st.PreloadNote += " (foreign-key checks on: the role is not superuser)"
	}
	s.logf("preloaded in %.1f s", st.PreloadSeconds)
	return nil
}
