package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

const insertClaimSQL = `
INSERT INTO claims (id, received_at, net_fee_cents, line_count)
VALUES ($1, $2, $3, $4)`

// All lines of a claim go in with one set-based statement.
const insertLinesSQL = `
INSERT INTO claim_lines (
    claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group,
    subscriber, provider_npi, provider_fees_cents, allowed_fees_cents,
    member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT $1, l.line_no, l.service_date, l.procedure, NULLIF(l.quadrant, ''), l.plan_group,
       l.subscriber, l.npi, l.provider_fees, l.allowed_fees, l.coinsurance, l.copay, l.net_fee
FROM unnest($2::int[], $3::date[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])
     AS l(line_no, service_date, procedure, quadrant, plan_group, subscriber, npi,
          provider_fees, allowed_fees, coinsurance, copay, net_fee)`

// The providers arrive sorted by NPI, so concurrent claims lock totals rows in
// the same order and cannot deadlock. Every change bumps the version.
const upsertTotalsSQL = `
INSERT INTO provider_totals AS t (provider_npi, total_net_fee_cents, version)
SELECT npi, fee, 1 FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS d(npi, fee, ord)
ORDER BY ord
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = t.total_net_fee_cents + excluded.total_net_fee_cents,
    version = t.version + 1,
    updated_at = now()
RETURNING provider_npi, total_net_fee_cents, version`

// InsertClaim stores a claim whole, its lines and the change to each of its
// providers' totals, in one transaction. It returns the providers' totals as
// committed, with their new versions.
func (s *Store) InsertClaim(ctx context.Context, c claim.Claim) ([]claim.ProviderTotal, error) {
	id, err := uuid.Parse(c.ID)
	if err != nil {
		return nil, fmt.Errorf("claim id %q: %w", c.ID, err)
	}
	n := len(c.Lines)
	var (
		lineNos                                   = make([]int32, n)
		dates                                     = make([]time.Time, n)
		procs, quads, plans, subs, npis           = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		provFees, allowed, coins, copays, netFees = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	)
	for i, l := range c.Lines {
		lineNos[i] = int32(i)
		dates[i] = l.ServiceDate
		procs[i], quads[i], plans[i], subs[i], npis[i] = l.SubmittedProcedure, l.Quadrant, l.PlanGroup, l.Subscriber, l.ProviderNPI
		provFees[i], allowed[i] = int64(l.ProviderFees), int64(l.AllowedFees)
		coins[i], copays[i], netFees[i] = int64(l.MemberCoinsurance), int64(l.MemberCopay), int64(l.NetFee())
	}
	perProvider := c.ProviderNetFees()
	totalNPIs := make([]string, 0, len(perProvider))
	for npi := range perProvider {
		totalNPIs = append(totalNPIs, npi)
	}
	slices.Sort(totalNPIs)
	totalFees := make([]int64, len(totalNPIs))
	for i, npi := range totalNPIs {
		totalFees[i] = int64(perProvider[npi])
	}

	var totals []claim.ProviderTotal
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertClaimSQL, id, c.ReceivedAt, int64(c.NetFee()), n); err != nil {
			return fmt.Errorf("insert claim: %w", err)
		}
		if _, err := tx.Exec(ctx, insertLinesSQL, id, lineNos, dates, procs, quads, plans, subs, npis,
			provFees, allowed, coins, copays, netFees); err != nil {
			return fmt.Errorf("insert claim lines: %w", err)
		}
		rows, err := tx.Query(ctx, upsertTotalsSQL, totalNPIs, totalFees)
		if err != nil {
			return fmt.Errorf("update provider totals: %w", err)
		}
		totals, err = pgx.CollectRows(rows, scanTotal)
		if err != nil {
			return fmt.Errorf("update provider totals: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return totals, nil
}

func scanTotal(row pgx.CollectableRow) (claim.ProviderTotal, error) {
	var t claim.ProviderTotal
	err := row.Scan(&t.ProviderNPI, &t.NetFee, &t.Version)
	return t, err
}

const claimSQL = `
SELECT c.received_at, l.service_date, l.submitted_procedure, coalesce(l.quadrant, ''),
       l.plan_group, l.subscriber, l.provider_npi, l.provider_fees_cents,
       l.allowed_fees_cents, l.member_coinsurance_cents, l.member_copay_cents
FROM claims c JOIN claim_lines l ON l.claim_id = c.id
WHERE c.id = $1
ORDER BY l.line_no`

// Claim reads a stored claim; claim.ErrNotFound when there is none with that id.
func (s *Store) Claim(ctx context.Context, id string) (claim.Claim, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return claim.Claim{}, claim.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, claimSQL, uid)
	if err != nil {
		return claim.Claim{}, fmt.Errorf("read claim: %w", err)
	}
	c := claim.Claim{ID: uid.String()}
	var l claim.Line
	_, err = pgx.ForEachRow(rows, []any{&c.ReceivedAt, &l.ServiceDate, &l.SubmittedProcedure, &l.Quadrant,
		&l.PlanGroup, &l.Subscriber, &l.ProviderNPI, &l.ProviderFees, &l.AllowedFees,
		&l.MemberCoinsurance, &l.MemberCopay}, func() error {
		c.Lines = append(c.Lines, l)
		return nil
	})
	if err != nil {
		return claim.Claim{}, fmt.Errorf("read claim: %w", err)
	}
	if len(c.Lines) == 0 {
		return claim.Claim{}, claim.ErrNotFound
	}
	return c, nil
}
