package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// A claim with an external id that is already stored inserts nothing.
const insertClaimSQL = `
INSERT INTO claims (id, client_scope, external_id, request_hash, received_at, net_fee_cents, line_count)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7)
ON CONFLICT (client_scope, external_id) WHERE external_id IS NOT NULL DO NOTHING`

const claimByExternalIDSQL = `
SELECT id, request_hash FROM claims WHERE client_scope = $1 AND external_id = $2`

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

// Inserted is what InsertClaim did.
type Inserted struct {
	// Totals are the providers' totals as committed, with their new versions.
	Totals []claim.ProviderTotal
	// ExistingID is set when a claim with the same external id was already
	// stored: then nothing was written and this is that claim's id.
	ExistingID string
}

// InsertClaim stores a claim whole, its lines and the change to each of its
// providers' totals, in one transaction. A claim whose external id its sender
// already stored is not stored again (claim.ErrClaimIDReused if the content
// differs). When lease is not nil, the outcome is recorded
// against the idempotency key in the same transaction; if the lease was lost
// meanwhile nothing is stored and the error is claim.ErrKeyInFlight.
func (s *Store) InsertClaim(ctx context.Context, c claim.Claim, lease *KeyLease) (Inserted, error) {
	id, err := uuid.Parse(c.ID)
	if err != nil {
		return Inserted{}, wrap("insert claim", err)
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

	var out Inserted
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		fingerprint := c.Fingerprint()
		tag, err := tx.Exec(ctx, insertClaimSQL, id, c.Sender, c.ExternalID, fingerprint,
			c.ReceivedAt, int64(c.NetFee()), n)
		if err != nil {
			return wrap("insert claim", err)
		}
		if tag.RowsAffected() == 0 { // the external id is taken: a resubmission
			var (
				existing     uuid.UUID
				existingHash []byte
			)
			if err := tx.QueryRow(ctx, claimByExternalIDSQL, c.Sender, c.ExternalID).Scan(&existing, &existingHash); err != nil {
				return wrap("find claim by external id", err)
			}
			if !bytes.Equal(existingHash, fingerprint) {
				return claim.ErrClaimIDReused
			}
			out.ExistingID = existing.String()
			return recordKeyOutcome(ctx, tx, lease, existing, false)
		}
		if _, err := tx.Exec(ctx, insertLinesSQL, id, lineNos, dates, procs, quads, plans, subs, npis,
			provFees, allowed, coins, copays, netFees); err != nil {
			return wrap("insert claim lines", err)
		}
		rows, err := tx.Query(ctx, upsertTotalsSQL, totalNPIs, totalFees)
		if err != nil {
			return wrap("update provider totals", err)
		}
		out.Totals, err = pgx.CollectRows(rows, scanTotal)
		if err != nil {
			return wrap("update provider totals", err)
		}
		return recordKeyOutcome(ctx, tx, lease, id, true)
	})
	var commitErr *commitError
	if errors.As(err, &commitErr) && s.claimExists(ctx, id) {
		// Committed after all. Its totals reach Redis through reconciliation.
		return Inserted{}, nil
	}
	if err != nil {
		return Inserted{}, err
	}
	return out, nil
}

// claimExists looks up a claim whose COMMIT failed, on a fresh deadline.
// Any doubt (the lookup fails too) counts as not stored.
func (s *Store) claimExists(ctx context.Context, id uuid.UUID) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var exists bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM claims WHERE id = $1)", id).Scan(&exists)
	return err == nil && exists
}

func scanTotal(row pgx.CollectableRow) (claim.ProviderTotal, error) {
	var t claim.ProviderTotal
	err := row.Scan(&t.ProviderNPI, &t.NetFee, &t.Version)
	return t, err
}

const claimSQL = `
SELECT c.received_at, coalesce(c.external_id, ''), l.service_date, l.submitted_procedure,
       coalesce(l.quadrant, ''), l.plan_group, l.subscriber, l.provider_npi, l.provider_fees_cents,
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
		return claim.Claim{}, wrap("read claim", err)
	}
	c := claim.Claim{ID: uid.String()}
	var l claim.Line
	_, err = pgx.ForEachRow(rows, []any{&c.ReceivedAt, &c.ExternalID, &l.ServiceDate, &l.SubmittedProcedure,
		&l.Quadrant, &l.PlanGroup, &l.Subscriber, &l.ProviderNPI, &l.ProviderFees, &l.AllowedFees,
		&l.MemberCoinsurance, &l.MemberCopay}, func() error {
		c.Lines = append(c.Lines, l)
		return nil
	})
	if err != nil {
		return claim.Claim{}, wrap("read claim", err)
	}
	if len(c.Lines) == 0 {
		return claim.Claim{}, claim.ErrNotFound
	}
	return c, nil
}
