package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// Copies of the real tables with the same columns, constraints and indexes,
// so the ceilings write the rows claimd writes without touching its data.
var ceilingTablesSQL = []string{
	`CREATE TABLE ceiling_claims (LIKE claims INCLUDING ALL)`,
	`CREATE TABLE ceiling_claim_lines (LIKE claim_lines INCLUDING ALL)`,
	`ALTER TABLE ceiling_claim_lines ADD FOREIGN KEY (claim_id) REFERENCES ceiling_claims (id) ON DELETE CASCADE`,
	`CREATE TABLE ceiling_provider_totals (LIKE provider_totals INCLUDING ALL)`,
}

const (
	ceilingClaimsSQL = `
INSERT INTO ceiling_claims (id, client_scope, external_id, request_hash, received_at, net_fee_cents, line_count)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::bigint[], $7::int[])
ON CONFLICT (client_scope, external_id) WHERE external_id IS NOT NULL DO NOTHING`
	ceilingLinesSQL = `
INSERT INTO ceiling_claim_lines (claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group,
    subscriber, provider_npi, provider_fees_cents, allowed_fees_cents, member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT l.claim_id, l.line_no, l.service_date, l.procedure, NULLIF(l.quadrant, ''), l.plan_group, l.subscriber, l.npi,
       l.fees, l.allowed, l.coins, l.copay, l.net
FROM unnest($1::uuid[], $2::int[], $3::date[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])
     AS l(claim_id, line_no, service_date, procedure, quadrant, plan_group, subscriber, npi, fees, allowed, coins, copay, net)`
	ceilingTotalsSQL = `
INSERT INTO ceiling_provider_totals AS t (provider_npi, total_net_fee_cents, version)
SELECT npi, fee, 1 FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS d(npi, fee, ord)
ORDER BY ord
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = t.total_net_fee_cents + excluded.total_net_fee_cents, version = t.version + 1, updated_at = now()
RETURNING provider_npi, total_net_fee_cents, version`
)

// claimRows are claims as the arrays the set-based statements take.
type claimRows struct {
	ids                                  []uuid.UUID
	scopes, exts                         []string
	hashes                               [][]byte
	received                             []time.Time
	nets                                 []int64
	counts                               []int32
	lineClaim                            []uuid.UUID
	lineNo                               []int32
	dates                                []time.Time
	procs, quads, plans, subs, npis      []string
	fees, allowed, coins, copays, netFee []int64
}

func (r *claimRows) add(c *loadkit.Claim) {
	id, _ := uuid.NewV7()
	sum := sha256.Sum256([]byte(c.ExternalID))
	r.ids, r.scopes, r.exts, r.hashes = append(r.ids, id), append(r.scopes, ""), append(r.exts, c.ExternalID), append(r.hashes, sum[:])
	r.received, r.nets, r.counts = append(r.received, time.Now()), append(r.nets, c.NetFee()), append(r.counts, int32(len(c.Lines)))
	for i, l := range c.Lines {
		d, _ := time.Parse(time.DateOnly, l.ServiceDate)
		r.lineClaim, r.lineNo, r.dates = append(r.lineClaim, id), append(r.lineNo, int32(i)), append(r.dates, d)
		r.procs, r.quads, r.plans = append(r.procs, l.Procedure), append(r.quads, l.Quadrant), append(r.plans, l.PlanGroup)
		r.subs, r.npis = append(r.subs, l.Subscriber), append(r.npis, l.NPI)
		r.fees, r.allowed, r.coins = append(r.fees, l.Fees), append(r.allowed, l.Allowed), append(r.coins, l.Coinsurance)
		r.copays, r.netFee = append(r.copays, l.Copay), append(r.netFee, l.NetFee())
	}
}

func (r *claimRows) queue(b *pgx.Batch) {
	b.Queue(ceilingClaimsSQL, r.ids, r.scopes, r.exts, r.hashes, r.received, r.nets, r.counts)
	b.Queue(ceilingLinesSQL, r.lineClaim, r.lineNo, r.dates, r.procs, r.quads, r.plans, r.subs, r.npis,
		r.fees, r.allowed, r.coins, r.copays, r.netFee)
}

// ceilings measures Postgres alone, writing the rows claimd writes (the
// same generator's 4-line claims) into copies of its tables.
func (s *suite) ceilings(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, q := range ceilingTablesSQL {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("ceiling tables: %w", err)
		}
	}
	defer func() {
		for _, t := range []string{"ceiling_claim_lines", "ceiling_claims", "ceiling_provider_totals"} {
			_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+t)
		}
	}()
	c := &s.res.Ceilings
	pool := loadkit.NPIPool(s.sc.NPIs)

	// Set-based: 250 claims and their 1000 lines per transaction, both with
	// INSERT ... SELECT FROM unnest, pipelined in one round trip.
	s.logf("Postgres ceiling: set-based insert, 1000 lines per statement, %d connections, %s", s.sc.CeilingConn, s.sc.CeilingDur)
	c.SetConns = s.sc.CeilingConn
	var seq atomic.Int64
	lines, elapsed, lat, err := s.pgWorkers(ctx, s.sc.CeilingConn, s.sc.CeilingDur, func(w int) func(conn *pgx.Conn) (int64, error) {
		gen := loadkit.NewGenerator(int64(1000+w), pool, 1.1, 4)
		gen.FixLines(4)
		return func(conn *pgx.Conn) (int64, error) {
			var rows claimRows
			for range 250 {
				rows.add(gen.Claim(fmt.Sprintf("ceil-set-%d", seq.Add(1))))
			}
			b := &pgx.Batch{}
			rows.queue(b) // one implicit transaction: the batch ends with one Sync
			return int64(len(rows.lineNo)), conn.SendBatch(ctx, b).Close()
		}
	})
	if err != nil {
		return fmt.Errorf("set-based ceiling: %w", err)
	}
	c.SetLinesPerSec = float64(lines) / elapsed.Seconds()
	c.SetP99 = lat.P99

	// One claim per transaction, as claimd does it: the claim, its 4 lines
	// and its providers' totals (upserted in NPI order, RETURNING the new
	// versions), pipelined in one round trip: the best one claim per commit
	// can do.
	s.logf("Postgres ceiling: one claim per transaction, %d clients, %s", s.sc.PerTxConn, s.sc.CeilingDur)
	c.TxClients = s.sc.PerTxConn
	lines, elapsed, lat, err = s.pgWorkers(ctx, s.sc.PerTxConn, s.sc.CeilingDur, func(w int) func(conn *pgx.Conn) (int64, error) {
		gen := loadkit.NewGenerator(int64(2000+w), pool, 1.1, 4)
		gen.FixLines(4)
		return func(conn *pgx.Conn) (int64, error) {
			cl := gen.Claim(fmt.Sprintf("ceil-tx-%d", seq.Add(1)))
			var rows claimRows
			rows.add(cl)
			per := map[string]int64{}
			for _, l := range cl.Lines {
				per[l.NPI] += l.NetFee()
			}
			npis := slices.Sorted(maps.Keys(per))
			fees := make([]int64, len(npis))
			for i, n := range npis {
				fees[i] = per[n]
			}
			b := &pgx.Batch{}
			rows.queue(b)
			b.Queue(ceilingTotalsSQL, npis, fees)
			return int64(len(cl.Lines)), conn.SendBatch(ctx, b).Close()
		}
	})
	if err != nil {
		return fmt.Errorf("per-claim ceiling: %w", err)
	}
	c.TxLinesPerSec = float64(lines) / elapsed.Seconds()
	c.TxClaimsPerSec = c.TxLinesPerSec / 4
	c.TxP99 = lat.P99
	s.logf("ceilings: set-based %.0f lines/s; per-claim %.0f claims/s (%.0f lines/s)", c.SetLinesPerSec, c.TxClaimsPerSec, c.TxLinesPerSec)
	return nil
}

// pgWorkers runs n workers, each on its own connection, calling its step
// until d has passed; it returns the rows the steps wrote and how long.
func (s *suite) pgWorkers(ctx context.Context, n int, d time.Duration, mk func(w int) func(*pgx.Conn) (int64, error)) (int64, time.Duration, Latency, error) {
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		c, err := pgx.Connect(ctx, s.dbURL)
		if err != nil {
			return 0, 0, Latency{}, err
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	var (
		total atomic.Int64
		mu    sync.Mutex
		errs  []error
		lats  []time.Duration
		wg    sync.WaitGroup
	)
	started := time.Now()
	deadline := started.Add(d)
	for i, c := range conns {
		step := mk(i)
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t := time.Now()
				rows, err := step(c)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
				total.Add(rows)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total.Load(), time.Since(started), latencies(lats), errors.Join(errs...)
}
