package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/events"
)

// Claims go in with one statement per table per batch, whatever its size.
// A claim whose sender already stored its external id inserts nothing (also
// when the earlier one is in the same batch) and is not returned; so does a
// claim whose id is stored (a queued claim delivered again). Rows go in
// by external id, as totals go in by NPI: two batches waiting on each
// other's uncommitted external ids would otherwise deadlock.
const insertClaimsSQL = `
INSERT INTO claims (id, client_scope, external_id, request_hash, received_at, net_fee_cents, line_count)
SELECT c.id, c.scope, NULLIF(c.external_id, ''), c.hash, c.received_at, c.net_fee, c.line_count
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::bigint[], $7::int[])
     WITH ORDINALITY AS c(id, scope, external_id, hash, received_at, net_fee, line_count, ord)
ORDER BY c.scope, c.external_id, c.ord
ON CONFLICT DO NOTHING
RETURNING id`

const claimsByIDSQL = `SELECT id FROM claims WHERE id = ANY($1::uuid[])`

const claimsByExternalIDSQL = `
SELECT c.client_scope, c.external_id, c.id, c.request_hash
FROM claims c JOIN unnest($1::text[], $2::text[]) AS k(scope, external_id)
  ON c.client_scope = k.scope AND c.external_id = k.external_id`

const insertLinesSQL = `
INSERT INTO claim_lines (
    claim_id, line_no, service_date, submitted_procedure, quadrant, plan_group,
    subscriber, provider_npi, provider_fees_cents, allowed_fees_cents,
    member_coinsurance_cents, member_copay_cents, net_fee_cents)
SELECT l.claim_id, l.line_no, l.service_date, l.procedure, NULLIF(l.quadrant, ''), l.plan_group,
       l.subscriber, l.npi, l.provider_fees, l.allowed_fees, l.coinsurance, l.copay, l.net_fee
FROM unnest($1::uuid[], $2::int[], $3::date[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[])
     AS l(claim_id, line_no, service_date, procedure, quadrant, plan_group, subscriber, npi,
          provider_fees, allowed_fees, coinsurance, copay, net_fee)`

// The providers arrive sorted by NPI, so concurrent batches lock totals rows
// in the same order and cannot deadlock. Every change bumps the version. A
// total that would leave claim.MaxTotal ($3), up or down, is not written, and its
// provider is missing from what the statement returns.
const upsertTotalsSQL = `
INSERT INTO provider_totals AS t (provider_npi, total_net_fee_cents, claims, version)
SELECT npi, fee, n, 1 FROM unnest($1::text[], $2::bigint[], $4::bigint[]) WITH ORDINALITY AS d(npi, fee, n, ord)
WHERE abs(fee) <= $3
ORDER BY ord
ON CONFLICT (provider_npi) DO UPDATE
SET total_net_fee_cents = t.total_net_fee_cents + excluded.total_net_fee_cents,
    claims = t.claims + excluded.claims,
    version = t.version + 1,
    updated_at = now()
WHERE abs(t.total_net_fee_cents + excluded.total_net_fee_cents) <= $3
RETURNING ` + totalColumns

// totalColumns are a provider_totals row's, for scanTotal.
const totalColumns = `provider_npi, total_net_fee_cents, version, claims`

// delta is what a transaction changes in one provider's total: its net fee,
// and how many claims with a line of it it stores (+) or reverses (-).
type delta struct {
	fee    claim.Cents
	claims int64
}

// deltas are a transaction's changes, by provider NPI.
type deltas map[string]delta

// boardDeltas are a transaction's changes to the boards other than the
// all-time one (board_totals), by board key and provider NPI.
type boardDeltas map[boardNPI]delta

type boardNPI struct{ board, npi string }

// add adds what claim c changes in the boards its lines count toward (see
// claim.BoardsOf): sign +1 for c stored, -1 for c reversed. A claim counts
// once in each board and provider its lines share.
func (d boardDeltas) add(c claim.Claim, sign int64) {
	counted := map[boardNPI]bool{}
	var (
		keys     []string // of the last line's date and plan: most claims have one of each
		lastDate time.Time
		lastPlan string
	)
	for _, l := range c.Lines {
		if keys == nil || !l.ServiceDate.Equal(lastDate) || l.PlanGroup != lastPlan {
			keys, lastDate, lastPlan = keys[:0], l.ServiceDate, l.PlanGroup
			for _, b := range claim.BoardsOf(l.ServiceDate, l.PlanGroup) {
				keys = append(keys, b.Key())
			}
		}
		for _, key := range keys {
			k := boardNPI{key, l.ProviderNPI}
			x := d[k]
			x.fee += claim.Cents(sign) * l.NetFee()
			if !counted[k] {
				counted[k] = true
				x.claims += sign
			}
			d[k] = x
		}
	}
}

// upsertBoardsSQL adds a transaction's changes to board_totals, in (board,
// NPI) order, as upsertTotalsSQL does provider_totals.
const upsertBoardsSQL = `
INSERT INTO board_totals AS t (board, provider_npi, total_net_fee_cents, claims, version)
SELECT b, npi, fee, n, 1 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS d(b, npi, fee, n, ord)
ORDER BY ord
ON CONFLICT (board, provider_npi) DO UPDATE
SET total_net_fee_cents = t.total_net_fee_cents + excluded.total_net_fee_cents,
    claims = t.claims + excluded.claims,
    version = t.version + 1,
    updated_at = now()
RETURNING board, ` + totalColumns

// queue queues d's upsert in batch, in (board, NPI) order, so that
// transactions lock board rows in one order and cannot deadlock.
func (d boardDeltas) queue(batch *pgx.Batch) {
	if len(d) == 0 {
		return
	}
	keys := slices.SortedFunc(maps.Keys(d), func(a, b boardNPI) int {
		return cmp.Or(strings.Compare(a.board, b.board), strings.Compare(a.npi, b.npi))
	})
	boards, npis := make([]string, len(keys)), make([]string, len(keys))
	fees, counts := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		boards[i], npis[i], fees[i], counts[i] = k.board, k.npi, int64(d[k].fee), d[k].claims
	}
	batch.Queue(upsertBoardsSQL, boards, npis, fees, counts)
}

// add adds what claim c changes: sign +1 for c stored (its net fees, one
// claim for each of its providers), -1 for c reversed (taken away).
func (d deltas) add(c claim.Claim, sign int64) {
	for npi, fee := range c.ProviderNetFees() {
		x := d[npi]
		x.fee += claim.Cents(sign) * fee
		x.claims += sign
		d[npi] = x
	}
}

// The totals of providers a batch could not add to, as they stand (their
// rows locked by the upsert that left them alone).
const totalsOfSQL = `
SELECT provider_npi, total_net_fee_cents FROM provider_totals WHERE provider_npi = ANY($1::text[])`

// InsertClaims stores a batch of claims in one transaction: each claim whole
// with its lines, and the change to each provider's total once for the whole
// batch. A claim whose external id its sender already stored is not stored
// again, and a claim whose idempotency key lease was lost is not stored; both
// are reported per claim and do not affect the others. The outcome of each
// leased claim is recorded against its key in the same transaction.
//
// An error fails the whole batch: nothing was stored. (A failed COMMIT is
// looked up, so a batch that did commit is reported as stored.)
func (s *Store) InsertClaims(ctx context.Context, pending []claim.Pending) (claim.StoredBatch, error) {
	out := claim.StoredBatch{Claims: make([]claim.Stored, len(pending))}
	var (
		inserted []int         // indexes of the claims this batch stores
		replaced []claim.Claim // the claims its corrections reverse
		// refused holds the claims that would take a provider's total past
		// claim.MaxTotal, found by an attempt that was rolled back.
		refused = map[int]error{}
	)
	attempt := func(tx pgx.Tx) error {
		inserted, replaced = inserted[:0], nil
		clear(out.Claims)
		live, err := lockLeases(ctx, tx, pending, out.Claims)
		if err != nil {
			return err
		}
		for i, err := range refused {
			if live[i] {
				live[i], out.Claims[i].Err = false, err
			}
		}
		if inserted, err = insertClaims(ctx, tx, pending, live); err != nil {
			return err
		}
		if err := resolveExisting(ctx, tx, pending, live, inserted, out.Claims); err != nil {
			return err
		}
		if err := insertLines(ctx, tx, pending, inserted); err != nil {
			return err
		}
		change, reversed, err := reverseReplaced(ctx, tx, pending, inserted, out.Claims)
		if err != nil {
			return err
		}
		replaced = reversed
		var evs []events.Row
		if s.events.Load() {
			evs = make([]events.Row, 0, len(inserted)+len(reversed))
			for _, c := range reversed {
				evs = append(evs, events.Reversed(c))
			}
			for _, i := range inserted {
				c := pending[i].Claim
				c.Replaces = out.Claims[i].Replaced
				evs = append(evs, events.Stored(c))
			}
		}
		totals, err := addToTotals(ctx, tx, pending, inserted, change, reversed, evs)
		if err != nil {
			return err
		}
		out.Totals, out.Boards = splitBoards(totals)
		return recordKeyOutcomes(ctx, tx, pending, live, out.Claims)
	}
	err := s.withTx(ctx, attempt)
	// Each retry refuses at least one more claim (see totalsOverflow.refuse); the
	// bound on retries only guards against a mistake in that reasoning.
	for range 8 {
		var (
			over *totalsOverflow
			rf   refusals
		)
		if errors.As(err, &over) {
			maps.Copy(refused, over.refuse(pending, inserted, replaced))
		} else if errors.As(err, &rf) {
			maps.Copy(refused, rf)
		} else {
			break
		}
		err = s.withTx(ctx, attempt)
	}
	var commitErr *commitError
	if errors.As(err, &commitErr) && len(inserted) > 0 && s.claimExists(ctx, pending[inserted[0]].Claim.ID) {
		// Committed after all. If Redis misses the totals, reconciliation adds them.
		return out, nil
	}
	if err != nil {
		return claim.StoredBatch{}, err
	}
	return out, nil
}

// lockLeases locks the idempotency keys the batch's requests hold, so that
// none can be taken over before the batch commits, and marks the claims
// whose lease is gone. It returns which claims go on.
func lockLeases(ctx context.Context, tx pgx.Tx, pending []claim.Pending, stored []claim.Stored) ([]bool, error) {
	live := make([]bool, len(pending))
	var scopes, keys, tokens []string
	for i, p := range pending {
		live[i] = true
		if p.Lease != nil {
			scopes, keys, tokens = append(scopes, p.Lease.Scope), append(keys, p.Lease.Key), append(tokens, p.Lease.Token.String())
		}
	}
	if len(keys) == 0 {
		return live, nil
	}
	rows, err := tx.Query(ctx, lockLeasesSQL, scopes, keys, tokens)
	if err != nil {
		return nil, wrap("lock idempotency keys", err)
	}
	held := map[string]bool{}
	var token uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&token}, func() error {
		held[token.String()] = true
		return nil
	}); err != nil {
		return nil, wrap("lock idempotency keys", err)
	}
	for i, p := range pending {
		if p.Lease != nil && !held[p.Lease.Token.String()] {
			live[i] = false // the lease expired and another request took the key
			stored[i].Err = claim.ErrKeyInFlight
		}
	}
	return live, nil
}

const lockLeasesSQL = `
SELECT k.lease_token FROM idempotency_keys k
JOIN unnest($1::text[], $2::text[], $3::uuid[]) AS l(scope, key, token)
  ON k.scope = l.scope AND k.key = l.key AND k.lease_token = l.token
ORDER BY k.scope, k.key
FOR UPDATE OF k`

// insertClaims inserts the claims rows and returns the indexes of the claims
// inserted; the others' external ids were taken.
func insertClaims(ctx context.Context, tx pgx.Tx, pending []claim.Pending, live []bool) ([]int, error) {
	var (
		ids                 [][16]byte // binary uuids: no text for Postgres to parse
		scopes, externalIDs []string
		hashes              [][]byte
		receivedAt          []time.Time
		netFees             []int64
		lineCounts          []int32
		index               = map[string]int{}
	)
	for i, p := range pending {
		if !live[i] {
			continue
		}
		c := p.Claim
		id, err := uuid.Parse(c.ID)
		if err != nil {
			return nil, wrap("insert claims", err)
		}
		index[id.String()] = i
		ids, scopes, externalIDs = append(ids, id), append(scopes, c.Sender), append(externalIDs, c.ExternalID)
		hashes, receivedAt = append(hashes, c.Fingerprint()), append(receivedAt, c.ReceivedAt)
		netFees, lineCounts = append(netFees, int64(c.NetFee())), append(lineCounts, int32(len(c.Lines)))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, insertClaimsSQL, ids, scopes, externalIDs, hashes, receivedAt, netFees, lineCounts)
	if err != nil {
		return nil, wrap("insert claims", err)
	}
	var (
		id       uuid.UUID
		inserted []int
	)
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		inserted = append(inserted, index[id.String()])
		return nil
	}); err != nil {
		return nil, wrap("insert claims", err)
	}
	slices.Sort(inserted)
	return inserted, nil
}

// resolveExisting finds the stored claim for each live claim not inserted:
// the claim itself when its id is stored (delivered again from the queue);
// otherwise the claim with its external id, a resubmission when the content
// is the same, a refusal when not.
func resolveExisting(ctx context.Context, tx pgx.Tx, pending []claim.Pending, live []bool, inserted []int, stored []claim.Stored) error {
	taken := slices.Clone(live) // live claims not inserted: their id or external id was taken
	for _, i := range inserted {
		taken[i] = false
	}
	var ids []string
	for i, p := range pending {
		if taken[i] {
			ids = append(ids, p.Claim.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, claimsByIDSQL, ids)
	if err != nil {
		return wrap("find claims by id", err)
	}
	storedIDs := map[string]bool{}
	var id uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		storedIDs[id.String()] = true
		return nil
	}); err != nil {
		return wrap("find claims by id", err)
	}
	var scopes, externalIDs []string
	for i, p := range pending {
		if !taken[i] {
			continue
		}
		if storedIDs[p.Claim.ID] {
			taken[i] = false
			stored[i].ExistingID = p.Claim.ID
			continue
		}
		scopes, externalIDs = append(scopes, p.Claim.Sender), append(externalIDs, p.Claim.ExternalID)
	}
	if len(scopes) == 0 {
		return nil
	}
	type existing struct {
		id   uuid.UUID
		hash []byte
	}
	found := map[[2]string]existing{}
	rows, err = tx.Query(ctx, claimsByExternalIDSQL, scopes, externalIDs)
	if err != nil {
		return wrap("find claims by external id", err)
	}
	var (
		scope, externalID string
		e                 existing
	)
	if _, err := pgx.ForEachRow(rows, []any{&scope, &externalID, &e.id, &e.hash}, func() error {
		found[[2]string{scope, externalID}] = e
		return nil
	}); err != nil {
		return wrap("find claims by external id", err)
	}
	for i, p := range pending {
		if !taken[i] {
			continue
		}
		e, ok := found[[2]string{p.Claim.Sender, p.Claim.ExternalID}]
		switch {
		case !ok: // cannot happen: the insert saw it
			return fmt.Errorf("claim with external id taken not found")
		case !bytes.Equal(e.hash, p.Claim.Fingerprint()):
			stored[i].Err = claim.ErrClaimIDReused
		default:
			stored[i].ExistingID = e.id.String()
		}
	}
	return nil
}

// insertLines writes the lines of all inserted claims with one statement.
func insertLines(ctx context.Context, tx pgx.Tx, pending []claim.Pending, inserted []int) error {
	n := 0
	for _, i := range inserted {
		n += len(pending[i].Claim.Lines)
	}
	if n == 0 {
		return nil
	}
	var (
		claimIDs                                  = make([][16]byte, 0, n)
		lineNos                                   = make([]int32, 0, n)
		dates                                     = make([]time.Time, 0, n)
		procs, quads, plans, subs, npis           = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		provFees, allowed, coins, copays, netFees = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	)
	for _, i := range inserted {
		c := pending[i].Claim
		id, err := uuid.Parse(c.ID) // cannot fail: insertClaims stored it
		if err != nil {
			return wrap("insert claim lines", err)
		}
		for no, l := range c.Lines {
			claimIDs, lineNos, dates = append(claimIDs, id), append(lineNos, int32(no)), append(dates, l.ServiceDate)
			procs, quads, plans = append(procs, l.SubmittedProcedure), append(quads, l.Quadrant), append(plans, l.PlanGroup)
			subs, npis = append(subs, l.Subscriber), append(npis, l.ProviderNPI)
			provFees, allowed = append(provFees, int64(l.ProviderFees)), append(allowed, int64(l.AllowedFees))
			coins, copays = append(coins, int64(l.MemberCoinsurance)), append(copays, int64(l.MemberCopay))
			netFees = append(netFees, int64(l.NetFee()))
		}
	}
	_, err := tx.Exec(ctx, insertLinesSQL, claimIDs, lineNos, dates, procs, quads, plans, subs, npis,
		provFees, allowed, coins, copays, netFees)
	return wrap("insert claim lines", err)
}

// addToTotals adds the inserted claims' net fees, and change (what the
// claims they replace take away), to their providers' totals,
// once per provider, in NPI order, and writes evs to the outbox (see
// changeTotals). When a total would leave claim.MaxTotal it
// fails with a *totalsOverflow: the transaction must be rolled back, and
// tried again without the claims it names.
func addToTotals(ctx context.Context, tx pgx.Tx, pending []claim.Pending, inserted []int, change deltas, replaced []claim.Claim, evs []events.Row) ([]claim.ProviderTotal, error) {
	sum := maps.Clone(change)
	if sum == nil {
		sum = deltas{}
	}
	boards := boardDeltas{}
	for _, c := range replaced {
		boards.add(c, -1)
	}
	for _, i := range inserted {
		sum.add(pending[i].Claim, +1)
		boards.add(pending[i].Claim, +1)
	}
	return changeTotals(ctx, tx, sum, boards, evs)
}

// changeTotals adds each provider's change to its total, in NPI order (see
// addToTotals), and writes the transaction's events, evs, to the outbox in
// the same round trip to Postgres: the two statements are sent together.
func changeTotals(ctx context.Context, tx pgx.Tx, sum deltas, boards boardDeltas, evs []events.Row) ([]claim.ProviderTotal, error) {
	if len(sum) == 0 {
		return nil, insertEvents(ctx, tx, evs)
	}
	npis := slices.Sorted(maps.Keys(sum))
	fees, counts := make([]int64, len(npis)), make([]int64, len(npis))
	for i, npi := range npis {
		fees[i], counts[i] = int64(sum[npi].fee), sum[npi].claims
	}
	batch := &pgx.Batch{}
	batch.Queue(upsertTotalsSQL, npis, fees, int64(claim.MaxTotal), counts)
	boards.queue(batch)
	if len(evs) > 0 {
		ids, keys, body, err := outboxRow(evs)
		if err != nil {
			return nil, err
		}
		batch.Queue(insertEventsSQL, ids, keys, body)
	}
	results := tx.SendBatch(ctx, batch)
	totals, err := readTotals(results)
	allTime := len(totals) // the rest are the other boards'
	if err == nil && len(boards) > 0 {
		var rows pgx.Rows
		if rows, err = results.Query(); err == nil {
			totals, err = pgx.AppendRows(totals, rows, scanBoardTotal)
		}
		err = wrap("update board totals", err)
	}
	if err == nil && len(evs) > 0 {
		_, err = results.Exec()
		err = wrap("write events", err)
	}
	if cerr := results.Close(); err == nil && cerr != nil {
		err = wrap("update provider totals", cerr)
	}
	if err != nil || allTime == len(npis) {
		return totals, err
	}
	written := make(map[string]bool, allTime)
	for _, t := range totals[:allTime] {
		written[t.ProviderNPI] = true
	}
	over := &totalsOverflow{totals: map[string]claim.Cents{}}
	var left []string
	for _, npi := range npis {
		if !written[npi] {
			over.totals[npi] = 0 // a provider without a row yet
			left = append(left, npi)
		}
	}
	rows, err := tx.Query(ctx, totalsOfSQL, left)
	if err != nil {
		return nil, wrap("read provider totals", err)
	}
	var (
		npi   string
		total claim.Cents
	)
	if _, err := pgx.ForEachRow(rows, []any{&npi, &total}, func() error {
		over.totals[npi] = total
		return nil
	}); err != nil {
		return nil, wrap("read provider totals", err)
	}
	return nil, over
}

// splitBoards splits what changeTotals returns: the all-time board's
// totals, then the other boards'.
func splitBoards(totals []claim.ProviderTotal) (allTime, boards []claim.ProviderTotal) {
	i := slices.IndexFunc(totals, func(t claim.ProviderTotal) bool { return t.Board != "" })
	if i < 0 {
		return totals, nil
	}
	return totals[:i:i], totals[i:]
}

// readTotals reads the totals the upsert wrote, the first of results.
func readTotals(results pgx.BatchResults) ([]claim.ProviderTotal, error) {
	rows, err := results.Query()
	if err != nil {
		return nil, wrap("update provider totals", err)
	}
	totals, err := pgx.CollectRows(rows, scanTotal)
	return totals, wrap("update provider totals", err)
}

// totalsOverflow fails a batch in which some providers' totals would leave
// claim.MaxTotal; totals holds each such provider's total before the batch.
type totalsOverflow struct {
	totals map[string]claim.Cents
}

func (e *totalsOverflow) Error() string {
	return fmt.Sprintf("%d provider totals would pass the bound", len(e.totals))
}

// refuse names the claims to refuse so that no total leaves the bound:
// walking the inserted claims in order, each claim that would take one of
// the providers past it, by its own lines or by reversing the claim it
// replaces (one of replaced). At least one claim is named: if every claim
// kept the running totals in bounds, the batch as a whole would have too.
func (e *totalsOverflow) refuse(pending []claim.Pending, inserted []int, replaced []claim.Claim) map[int]error {
	undo := make(map[string]map[string]claim.Cents, len(replaced)) // by the id of the correction
	for _, old := range replaced {
		fees := old.ProviderNetFees()
		for npi, fee := range fees {
			fees[npi] = -fee
		}
		undo[old.Reversal.ReplacedBy] = fees
	}
	out := map[int]error{}
	running := maps.Clone(e.totals)
	for _, i := range inserted {
		c := pending[i].Claim
		change := c.ProviderNetFees()
		for npi, fee := range undo[c.ID] {
			change[npi] += fee
		}
		var problems claim.Problems
		for npi, fee := range change {
			total, watched := running[npi]
			if !watched || (total+fee <= claim.MaxTotal && total+fee >= -claim.MaxTotal) {
				continue
			}
			lines := 0
			for n, l := range c.Lines {
				if l.ProviderNPI == npi {
					lines++
					problems = append(problems, claim.Problem{Line: n, Field: string(claim.FieldProviderNPI),
						Rule: claim.RuleProviderTotal, Detail: fmt.Sprintf(
							"this claim would take the provider's total net fee past %s (or below -%[1]s), the most the ranking holds exactly",
							claim.MaxTotal)})
				}
			}
			if lines == 0 { // a provider of the replaced claim alone
				problems = append(problems, claim.Problem{Line: -1, Field: "replaces", Rule: claim.RuleProviderTotal,
					Detail: fmt.Sprintf("reversing the claim this one replaces would take provider %s's total net fee past %s (or below -%[2]s)",
						npi, claim.MaxTotal)})
			}
		}
		if len(problems) > 0 {
			slices.SortFunc(problems, func(a, b claim.Problem) int { return a.Line - b.Line })
			out[i] = problems
			continue
		}
		for npi, fee := range change {
			if _, watched := running[npi]; watched {
				running[npi] += fee
			}
		}
	}
	return out
}

const recordKeysSQL = `
UPDATE idempotency_keys AS k
SET claim_id = o.claim_id, created = o.created, lease_token = NULL, lease_until = NULL
FROM unnest($1::text[], $2::text[], $3::uuid[], $4::uuid[], $5::bool[]) AS o(scope, key, token, claim_id, created)
WHERE k.scope = o.scope AND k.key = o.key AND k.lease_token = o.token`

// recordKeyOutcomes ties each stored (or found) claim to its request's
// idempotency key, so the two commit together or not at all.
func recordKeyOutcomes(ctx context.Context, tx pgx.Tx, pending []claim.Pending, live []bool, stored []claim.Stored) error {
	var (
		scopes, keys, tokens, claimIDs []string
		created                        []bool
	)
	for i, p := range pending {
		if p.Lease == nil || !live[i] || stored[i].Err != nil {
			continue
		}
		id, isNew := p.Claim.ID, stored[i].ExistingID == ""
		if !isNew {
			id = stored[i].ExistingID
		}
		scopes, keys, tokens = append(scopes, p.Lease.Scope), append(keys, p.Lease.Key), append(tokens, p.Lease.Token.String())
		claimIDs, created = append(claimIDs, id), append(created, isNew)
	}
	if len(keys) == 0 {
		return nil
	}
	tag, err := tx.Exec(ctx, recordKeysSQL, scopes, keys, tokens, claimIDs, created)
	if err != nil {
		return wrap("record idempotency keys", err)
	}
	if tag.RowsAffected() != int64(len(keys)) { // cannot happen: the leases are locked
		return fmt.Errorf("record idempotency keys: %d of %d leases held", tag.RowsAffected(), len(keys))
	}
	return nil
}

// claimExists looks up a claim whose COMMIT failed, on a fresh deadline.
// Any doubt (the lookup fails too) counts as not stored.
func (s *Store) claimExists(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var exists bool
	err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM claims WHERE id = $1)", id).Scan(&exists)
	return err == nil && exists
}

// scanTotal reads a row of totalColumns.
func scanTotal(row pgx.CollectableRow) (claim.ProviderTotal, error) {
	var t claim.ProviderTotal
	err := row.Scan(&t.ProviderNPI, &t.NetFee, &t.Version, &t.Claims)
	return t, err
}

// scanBoardTotal reads a board_totals row: its board, then totalColumns.
func scanBoardTotal(row pgx.CollectableRow) (claim.ProviderTotal, error) {
	var t claim.ProviderTotal
	err := row.Scan(&t.Board, &t.ProviderNPI, &t.NetFee, &t.Version, &t.Claims)
	return t, err
}

// claimColumns are a claim's, one row per line, for scanClaims.
const claimColumns = `
c.id, c.received_at, coalesce(c.external_id, ''), c.status, c.reversed_at, coalesce(c.reversal_reason, ''),
coalesce(c.reversal_detail, ''), coalesce(c.replaced_by::text, ''), coalesce(c.replaces::text, ''),
l.service_date, l.submitted_procedure,
coalesce(l.quadrant, ''), l.plan_group, l.subscriber, l.provider_npi, l.provider_fees_cents,
l.allowed_fees_cents, l.member_coinsurance_cents, l.member_copay_cents`

const claimSQL = `SELECT ` + claimColumns + `
FROM claims c JOIN claim_lines l ON l.claim_id = c.id
WHERE c.id = $1 AND c.client_scope = $2
ORDER BY l.line_no`

// Claim reads a stored claim of the client scope, reversed or not;
// claim.ErrNotFound when there is none with that id, or it is another
// client's.
func (s *Store) Claim(ctx context.Context, scope, id string) (claim.Claim, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return claim.Claim{}, claim.ErrNotFound
	}
	return readClaim(ctx, s.pool, scope, uid)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readClaim(ctx context.Context, q querier, scope string, uid uuid.UUID) (claim.Claim, error) {
	rows, err := q.Query(ctx, claimSQL, uid, scope)
	if err != nil {
		return claim.Claim{}, wrap("read claim", err)
	}
	cs, err := scanClaims(rows, scope)
	if err != nil {
		return claim.Claim{}, wrap("read claim", err)
	}
	if len(cs) == 0 {
		return claim.Claim{}, claim.ErrNotFound
	}
	return cs[0], nil
}

// scanClaims reads rows of claimColumns, each claim's lines together and in
// order, into claims of scope.
func scanClaims(rows pgx.Rows, scope string) ([]claim.Claim, error) {
	var (
		out        []claim.Claim
		id         uuid.UUID
		c          claim.Claim
		l          claim.Line
		status     string
		reversedAt *time.Time
		r          claim.Reversal
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &c.ReceivedAt, &c.ExternalID, &status, &reversedAt, &r.Reason, &r.Detail,
		&r.ReplacedBy, &c.Replaces, &l.ServiceDate, &l.SubmittedProcedure,
		&l.Quadrant, &l.PlanGroup, &l.Subscriber, &l.ProviderNPI, &l.ProviderFees, &l.AllowedFees,
		&l.MemberCoinsurance, &l.MemberCopay}, func() error {
		if n := len(out); n == 0 || out[n-1].ID != id.String() {
			next := claim.Claim{ID: id.String(), Sender: scope, ReceivedAt: c.ReceivedAt, ExternalID: c.ExternalID, Replaces: c.Replaces}
			if status == claim.StatusReversed && reversedAt != nil {
				rev := r
				rev.At = *reversedAt
				next.Reversal = &rev
			}
			out = append(out, next)
		}
		last := &out[len(out)-1]
		last.Lines = append(last.Lines, l)
		return nil
	})
	return out, err
}

// findByExternalIDSQL and findByProviderSQL are FindClaims's: the first by
// the client's unique (client_scope, external_id) index, the second a range
// of claim_lines_provider_claim, newest first, from $5 down to $7.
const (
	findByExternalIDSQL = `SELECT ` + claimColumns + `
FROM claims c JOIN claim_lines l ON l.claim_id = c.id
WHERE c.client_scope = $1 AND c.external_id = $2
ORDER BY l.line_no`
	findByProviderSQL = `
WITH picked AS (
    SELECT DISTINCT l.claim_id FROM claim_lines l JOIN claims c ON c.id = l.claim_id
    WHERE l.provider_npi = $2 AND l.claim_id < $5 AND l.claim_id >= $7
      AND l.service_date BETWEEN $3 AND $4 AND c.client_scope = $1
    ORDER BY l.claim_id DESC LIMIT $6)
SELECT ` + claimColumns + `
FROM picked p JOIN claims c ON c.id = p.claim_id JOIN claim_lines l ON l.claim_id = c.id
ORDER BY c.id DESC, l.line_no`
	// findScanSQL finds how far down the provider's lines a page may look:
	// the lowest claim id among the next $3 of them, and how many there are.
	findScanSQL = `
WITH s AS (
    SELECT claim_id FROM claim_lines WHERE provider_npi = $1 AND claim_id < $2
    ORDER BY claim_id DESC LIMIT $3)
SELECT coalesce((SELECT claim_id FROM s ORDER BY claim_id LIMIT 1), '00000000-0000-0000-0000-000000000000'),
       (SELECT count(*) FROM s)`
)

// findScanMax bounds the provider's lines one page of FindClaims looks at,
// whoever's they are: a client with few claims at a busy provider gets
// short (even empty) pages with a cursor to go on, not a scan of every
// client's lines in one request.
var findScanMax = 10_000

// FindClaims lists the client scope's stored claims that q asks for (see
// claim.Query), reversed or not, newest first, and the cursor of the next
// page ("" when there is none): the last claim's id when the page is full,
// or where the page stopped looking (findScanMax).
func (s *Store) FindClaims(ctx context.Context, scope string, q claim.Query) ([]claim.Claim, string, error) {
	if q.ExternalID != "" {
		rows, err := s.pool.Query(ctx, findByExternalIDSQL, scope, q.ExternalID)
		if err != nil {
			return nil, "", wrap("find claims", err)
		}
		out, err := scanClaims(rows, scope)
		return out, "", wrap("find claims", err)
	}
	before := uuid.Max
	if q.Before != "" {
		var err error
		if before, err = uuid.Parse(q.Before); err != nil {
			return nil, "", fmt.Errorf("find claims: cursor %q is not a claim id", q.Before)
		}
	}
	var (
		floor   uuid.UUID
		scanned int
	)
	if err := s.pool.QueryRow(ctx, findScanSQL, q.ProviderNPI, before, findScanMax).Scan(&floor, &scanned); err != nil {
		return nil, "", wrap("find claims", err)
	}
	if scanned < findScanMax {
		floor = uuid.Nil // the rest of the provider's lines: no floor
	}
	from, to := q.From, q.To
	if from.IsZero() {
		from = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if to.IsZero() {
		to = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	rows, err := s.pool.Query(ctx, findByProviderSQL, scope, q.ProviderNPI, from, to, before, q.Limit, floor)
	if err != nil {
		return nil, "", wrap("find claims", err)
	}
	out, err := scanClaims(rows, scope)
	if err != nil {
		return nil, "", wrap("find claims", err)
	}
	switch {
	case len(out) == q.Limit:
		return out, out[len(out)-1].ID, nil
	case floor != uuid.Nil:
		return out, floor.String(), nil
	}
	return out, "", nil
}
