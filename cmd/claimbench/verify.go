package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
)

// maxListedProblems bounds the problems printed; all are counted.
const maxListedProblems = 50

// VerifyReport says what was checked and what was wrong.
type VerifyReport struct {
	Passed        bool     `json:"passed"`
	Checks        []string `json:"checks"`
	ClaimsAcked   int      `json:"claims_acked"`
	ClaimsRefused int      `json:"claims_refused"`
	ClaimsUnknown int      `json:"claims_unknown"`
	ProblemCount  int      `json:"problem_count"`
	Problems      []string `json:"problems"` // the first maxListedProblems
	TopSource     string   `json:"top_providers_source,omitempty"`
}

func (r *VerifyReport) bad(format string, args ...any) {
	r.ProblemCount++
	if len(r.Problems) < maxListedProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// verifier holds the state of the service captured before the load, which
// the end state is compared against: the run only knows what it added.
type verifier struct {
	cfg    config
	l      *loader // for its HTTP helpers
	stderr io.Writer
	pool   []string

	topBefore         []loadkit.ProviderTotal
	topBeforeComplete bool // fewer than loadkit.TopListMax providers: the list was the whole ranking

	db       *pgx.Conn
	dbBefore map[string]int64 // provider_totals of the pool's NPIs

	rdb         *redis.Client
	redisBefore map[string]int64
}

func newVerifier(ctx context.Context, cfg config, client *http.Client, stderr io.Writer) (*verifier, error) {
	v := &verifier{cfg: cfg, l: &loader{cfg: cfg, client: client}, stderr: stderr, pool: loadkit.NPIPool(cfg.NPIs)}
	var err error
	if v.topBefore, _, err = v.readTop(ctx, time.Now().Add(time.Minute)); err != nil {
		return nil, err
	}
	v.topBeforeComplete = len(v.topBefore) < loadkit.TopListMax
	if cfg.DatabaseURL != "" {
		if v.db, err = pgx.Connect(ctx, cfg.DatabaseURL); err != nil {
			return nil, fmt.Errorf("connect to -database-url: %w", err)
		}
		if v.dbBefore, err = loadkit.ProviderTotals(ctx, v.db, v.pool); err != nil {
			v.Close()
			return nil, err
		}
	}
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("-redis-url: %w", err)
		}
		v.rdb = redis.NewClient(opts)
		if v.redisBefore, err = loadkit.RankingScores(ctx, v.rdb, rank.Keys{Prefix: v.cfg.RedisPrefix}, v.pool); err != nil {
			v.Close()
			return nil, err
		}
	}
	return v, nil
}

func (v *verifier) Close() {
	if v.db != nil {
		_ = v.db.Close(context.Background())
	}
	if v.rdb != nil {
		_ = v.rdb.Close()
	}
}

// Verify compares the end state with the baseline plus what was acknowledged.
func (v *verifier) Verify(ctx context.Context, res *loadResult) *VerifyReport {
	r := &VerifyReport{}
	for _, p := range res.Batch.Protocol {
		r.bad("POST /claims/batch: %s", p)
	}
	for range res.Batch.ProtocolCount - int64(len(res.Batch.Protocol)) {
		r.bad("POST /claims/batch: another answer broke the contract")
	}
	delta := map[string]int64{} // NPI -> cents this run added
	var acked []*sentClaim
	for _, sc := range res.Claims {
		switch sc.Outcome {
		case loadkit.Acked:
			r.ClaimsAcked++
			acked = append(acked, sc)
			for _, l := range sc.Claim.Lines {
				delta[l.NPI] += l.NetFee()
			}
			if sc.Problem != "" {
				r.bad("claim %s: the POST answer differs from what was sent: %s", sc.Claim.ExternalID, sc.Problem)
			}
		case loadkit.Refused:
			r.ClaimsRefused++
		default:
			r.ClaimsUnknown++
			r.bad("claim %s: outcome still unknown after resending it (last status %d)", sc.Claim.ExternalID, sc.Status)
		}
	}

	v.checkClaimsAPI(ctx, r, acked)
	var dbAfter map[string]int64
	if v.db != nil {
		v.checkClaimsDB(ctx, r, res.Claims)
		dbAfter = v.checkTotalsDB(ctx, r, delta)
	}
	if v.rdb != nil {
		v.checkRedis(ctx, r, delta, dbAfter)
	}
	v.checkTop(ctx, r, delta, dbAfter)
	r.Passed = r.ProblemCount == 0
	return r
}

// checkClaimsAPI reads every acknowledged claim back through GET /claims/{id}.
func (v *verifier) checkClaimsAPI(ctx context.Context, r *VerifyReport, acked []*sentClaim) {
	var mu sync.Mutex
	sem := make(chan struct{}, v.cfg.VerifyConc)
	var wg sync.WaitGroup
	what := fmt.Sprintf("%d acknowledged claims", len(acked))
	if n := v.cfg.VerifyAPIMax; n > 0 && len(acked) > n {
		// Every claim is checked in Postgres; through the API an even spread.
		sample := make([]*sentClaim, n)
		for i := range sample {
			sample[i] = acked[i*len(acked)/n]
		}
		what = fmt.Sprintf("%d of %d acknowledged claims (-verify-api-max)", n, len(acked))
		acked = sample
	}
	for _, sc := range acked {
		if sc.ID == "" {
			continue // already reported: the POST answer had no id
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			problem := v.getClaim(ctx, sc)
			if problem != "" {
				mu.Lock()
				r.bad("claim %s (id %s): GET /claims/{id}: %s", sc.Claim.ExternalID, sc.ID, problem)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.Checks = append(r.Checks, fmt.Sprintf("GET /claims/{id} of %s, every field and amount against what was sent", what))
}

func (v *verifier) getClaim(ctx context.Context, sc *sentClaim) string {
	var (
		status int
		body   []byte
		err    error
	)
	for attempt := range 3 { // a transient failure of the read is not a verification failure
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		status, body, err = v.l.do(ctx, http.MethodGet, "/claims/"+sc.ID, nil)
		if err == nil && status < 500 {
			break
		}
	}
	if err != nil {
		return err.Error()
	}
	if status != http.StatusOK {
		return fmt.Sprintf("answered %d", status)
	}
	id, problem := checkAnswer(sc.Claim, body)
	if problem == "" && id != sc.ID && !storedUnderOtherID(sc) {
		problem = fmt.Sprintf("answered claim %s", id)
	}
	return problem
}

// storedUnderOtherID: a claim accepted for the queue (202) after being sent
// twice, whose first send may have been queued too though its answer was
// lost: a worker stores whichever comes first, and the other is found stored
// under that one's id (its claim_id): both ids then name the stored claim.
func storedUnderOtherID(sc *sentClaim) bool { return sc.Accepted && sc.Resent }

// checkClaimsDB looks every claim of the run up by its claim_id (external_id):
// acknowledged ones stored once, as sent, under the acknowledged id; refused
// ones absent; and nothing else stored under this run's prefix.
func (v *verifier) checkClaimsDB(ctx context.Context, r *VerifyReport, claims []*sentClaim) {
	type stored struct {
		id        string
		net       int64
		lineCount int
		lines     []loadkit.Line
	}
	// Everything stored under this run's prefix, in two scans: a lookup per
	// claim_id would cost a query per few thousand claims, and this also
	// finds what was stored behind the run's back.
	prefix := v.cfg.RunID + "-"
	byExt := map[string]*stored{}
	rows, err := v.db.Query(ctx, `
		SELECT external_id, id::text, net_fee_cents, line_count FROM claims WHERE starts_with(external_id, $1)`, prefix)
	if err != nil {
		r.bad("read claims: %v", err)
		return
	}
	for rows.Next() {
		var ext string
		s := &stored{}
		if err := rows.Scan(&ext, &s.id, &s.net, &s.lineCount); err != nil {
			r.bad("read claims: %v", err)
			return
		}
		byExt[ext] = s
	}
	if rows.Err() != nil {
		r.bad("read claims: %v", rows.Err())
		return
	}
	rows, err = v.db.Query(ctx, `
		SELECT c.external_id, l.service_date, l.submitted_procedure, coalesce(l.quadrant, ''), l.plan_group,
		       l.subscriber, l.provider_npi, l.provider_fees_cents, l.allowed_fees_cents,
		       l.member_coinsurance_cents, l.member_copay_cents, l.net_fee_cents
		FROM claims c JOIN claim_lines l ON l.claim_id = c.id
		WHERE starts_with(c.external_id, $1) ORDER BY c.external_id, l.line_no`, prefix)
	if err != nil {
		r.bad("read claim lines: %v", err)
		return
	}
	for rows.Next() {
		var (
			ext  string
			date time.Time
			l    loadkit.Line
			net  int64
		)
		if err := rows.Scan(&ext, &date, &l.Procedure, &l.Quadrant, &l.PlanGroup, &l.Subscriber, &l.NPI,
			&l.Fees, &l.Allowed, &l.Coinsurance, &l.Copay, &net); err != nil {
			r.bad("read claim lines: %v", err)
			return
		}
		l.ServiceDate = date.Format(time.DateOnly)
		if net != l.NetFee() {
			r.bad("claim %s: a stored line's net_fee_cents is %d, its amounts give %d", ext, net, l.NetFee())
		}
		if s := byExt[ext]; s != nil {
			s.lines = append(s.lines, l)
		}
	}
	if rows.Err() != nil {
		r.bad("read claim lines: %v", rows.Err())
		return
	}

	acked := 0
	for _, sc := range claims {
		s := byExt[sc.Claim.ExternalID]
		switch sc.Outcome {
		case loadkit.Acked:
			acked++
			switch {
			case s == nil:
				r.bad("claim %s: acknowledged (%d, id %s) but not in Postgres", sc.Claim.ExternalID, sc.Status, sc.ID)
			case s.id != sc.ID && !storedUnderOtherID(sc):
				r.bad("claim %s: acknowledged as id %s, stored as %s", sc.Claim.ExternalID, sc.ID, s.id)
			case s.net != sc.Claim.NetFee() || s.lineCount != len(sc.Claim.Lines) || !slices.Equal(s.lines, sc.Claim.Lines):
				r.bad("claim %s: stored as %d lines (line_count %d, net %d), sent %d lines (net %d); lines equal: %t",
					sc.Claim.ExternalID, len(s.lines), s.lineCount, s.net, len(sc.Claim.Lines), sc.Claim.NetFee(),
					slices.Equal(s.lines, sc.Claim.Lines))
			}
		case loadkit.Refused:
			if s != nil {
				r.bad("claim %s: refused with %d but stored as %s", sc.Claim.ExternalID, sc.Status, s.id)
			}
		}
	}
	// Anything under this run's prefix that the run does not know as acked
	// was stored behind its back.
	if n := len(byExt); n != acked {
		r.bad("Postgres holds %d claims with claim_id %s-*, %d were acknowledged", n, v.cfg.RunID, acked)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("Postgres: %d claims of this run by claim_id (each line and amount), none stored unacknowledged", len(claims)))
}

// drainReport is what verification found waiting for the claims accepted
// for the queue (202) to be stored.
type drainReport struct {
	Accepted      int64   `json:"claims_accepted"` // answered 202
	WaitedSeconds float64 `json:"waited_seconds"`
	AllStored     bool    `json:"all_stored"`
	Note          string  `json:"note,omitempty"`
}

// waitStored waits, up to -drain-wait, until every acknowledged claim of the
// run is stored: in async mode a 202 means queued, and a worker stores the
// claim later. With -database-url it counts the run's claims in Postgres;
// otherwise it reads the accepted claims through GET /claims/{id}.
func (v *verifier) waitStored(ctx context.Context, res *loadResult) *drainReport {
	d := &drainReport{Accepted: res.acceptedClaims()}
	started := time.Now()
	deadline := started.Add(v.cfg.DrainWait)
	fmt.Fprintf(v.stderr, "claimbench: %d claims were accepted for the queue (202); waiting up to %s for them to be stored\n", d.Accepted, v.cfg.DrainWait)
	if v.db != nil {
		want := map[string]bool{}
		for _, sc := range res.Claims {
			if sc.Outcome == loadkit.Acked {
				want[sc.Claim.ExternalID] = true
			}
		}
		var n int64
		for {
			err := v.db.QueryRow(ctx, `SELECT count(*) FROM claims WHERE starts_with(external_id, $1)`, v.cfg.RunID+"-").Scan(&n)
			if err == nil && n >= int64(len(want)) {
				d.AllStored = true
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				d.Note = fmt.Sprintf("%d of the %d acknowledged claims stored after %s (err %v)", n, len(want), v.cfg.DrainWait, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	} else {
		var pending []*sentClaim
		for _, sc := range res.Claims {
			if sc.Outcome == loadkit.Acked && sc.Accepted && sc.ID != "" {
				pending = append(pending, sc)
			}
		}
		total := len(pending)
		for len(pending) > 0 {
			pending = v.notStored(ctx, pending)
			if len(pending) == 0 {
				d.AllStored = true
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				d.Note = fmt.Sprintf("%d of the %d accepted claims not stored after %s", len(pending), total, v.cfg.DrainWait)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		d.AllStored = len(pending) == 0
	}
	d.WaitedSeconds = time.Since(started).Seconds()
	if d.AllStored {
		fmt.Fprintf(v.stderr, "claimbench: every accepted claim stored after %.1f s of waiting\n", d.WaitedSeconds)
	} else {
		fmt.Fprintf(v.stderr, "claimbench: %s; verifying anyway\n", d.Note)
	}
	return d
}

// notStored reads each claim through GET /claims/{id} and returns those
// still queued (or not answered); a dead-lettered or missing one is final,
// and verification reports it.
func (v *verifier) notStored(ctx context.Context, claims []*sentClaim) []*sentClaim {
	var (
		mu   sync.Mutex
		out  []*sentClaim
		wg   sync.WaitGroup
		sem  = make(chan struct{}, v.cfg.VerifyConc)
		busy = func(sc *sentClaim) { mu.Lock(); out = append(out, sc); mu.Unlock() }
	)
	for _, sc := range claims {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			status, body, err := v.l.do(ctx, http.MethodGet, "/claims/"+sc.ID, nil)
			if err != nil || status >= 500 || bytes.Contains(body, []byte(`"status":"queued"`)) {
				busy(sc)
			}
		})
	}
	wg.Wait()
	return out
}

// checkTotalsDB requires provider_totals to have moved by exactly what was
// acknowledged, for every provider of the pool, and returns the totals.
func (v *verifier) checkTotalsDB(ctx context.Context, r *VerifyReport, delta map[string]int64) map[string]int64 {
	after, err := loadkit.ProviderTotals(ctx, v.db, v.pool)
	if err != nil {
		r.bad("%v", err)
		return nil
	}
	for _, npi := range v.pool {
		if want := v.dbBefore[npi] + delta[npi]; after[npi] != want {
			r.bad("provider %s: provider_totals is %d cents, baseline %d + sent %d = %d", npi, after[npi], v.dbBefore[npi], delta[npi], want)
		}
	}
	r.Checks = append(r.Checks, fmt.Sprintf("Postgres: provider_totals of all %d providers = baseline + acknowledged lines, exactly", len(v.pool)))
	return after
}

// checkRedis requires the ranking's score of every pool provider to equal its
// expected total, waiting up to -verify-wait for reconciliation to repair a
// Redis write that failed.
func (v *verifier) checkRedis(ctx context.Context, r *VerifyReport, delta, dbAfter map[string]int64) {
	want := func(npi string) int64 {
		if dbAfter != nil {
			return dbAfter[npi]
		}
		return v.redisBefore[npi] + delta[npi]
	}
	deadline := time.Now().Add(v.cfg.VerifyWait)
	var diffs []string
	for {
		got, err := loadkit.RankingScores(ctx, v.rdb, rank.Keys{Prefix: v.cfg.RedisPrefix}, v.pool)
		diffs = diffs[:0]
		if err != nil {
			diffs = append(diffs, err.Error())
		} else {
			for _, npi := range v.pool {
				if got[npi] != want(npi) {
					diffs = append(diffs, fmt.Sprintf("provider %s: redis score %d, expected %d", npi, got[npi], want(npi)))
				}
			}
		}
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, d := range diffs {
		r.bad("%s", d)
	}
	basis := "baseline + acknowledged lines"
	if dbAfter != nil {
		basis = "Postgres provider_totals"
	}
	r.Checks = append(r.Checks, fmt.Sprintf("Redis: ranking score of all %d providers = %s, exactly", len(v.pool), basis))
}

// checkTop reads /top-providers?limit=100 until it agrees with what is known
// or -verify-wait runs out. Without the database the baseline of a provider
// is known only if it was in the first list (or that list was the whole
// ranking); for the others the checks are bounds.
func (v *verifier) checkTop(ctx context.Context, r *VerifyReport, delta, dbAfter map[string]int64) {
	known := map[string]int64{}
	unknown := map[string]int64{} // NPI -> delta, baseline unknown but at most beforeMin
	var beforeMin int64
	for _, p := range v.topBefore {
		known[p.NPI] = p.Cents + delta[p.NPI]
		beforeMin = p.Cents // the list is in descending order
	}
	for npi, d := range delta {
		if _, ok := known[npi]; ok {
			continue
		}
		if v.topBeforeComplete {
			known[npi] = d
		} else {
			unknown[npi] = d
		}
	}
	for npi, cents := range dbAfter { // exact, and already checked against baseline + delta
		known[npi] = cents
		delete(unknown, npi)
	}

	deadline := time.Now().Add(v.cfg.VerifyWait)
	var problems []string
	for {
		list, source, err := v.readTop(ctx, deadline)
		r.TopSource = source
		if err != nil {
			problems = []string{"GET /top-providers: " + err.Error()}
		} else {
			problems = topProblems(list, known, unknown, beforeMin)
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, p := range problems {
		r.bad("/top-providers?limit=100: %s", p)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("GET /top-providers?limit=%d: order, every listed total, no provider missing (%d known totals, %d bounded)",
		loadkit.TopListMax, len(known), len(unknown)))
}

// topProblems checks one /top-providers answer. known holds providers whose
// total is known exactly; unknown the run's delta of providers whose baseline
// is only known to be at most beforeMin.
func topProblems(list []loadkit.ProviderTotal, known, unknown map[string]int64, beforeMin int64) []string {
	var out []string
	listed := map[string]bool{}
	for i, p := range list {
		listed[p.NPI] = true
		if i > 0 {
			prev := list[i-1]
			if prev.Cents < p.Cents || (prev.Cents == p.Cents && prev.NPI < p.NPI) {
				out = append(out, fmt.Sprintf("out of order at %d: %s %d before %s %d", i, prev.NPI, prev.Cents, p.NPI, p.Cents))
			}
		}
		if want, ok := known[p.NPI]; ok && p.Cents != want {
			out = append(out, fmt.Sprintf("provider %s listed with %d cents, expected %d", p.NPI, p.Cents, want))
		}
		if d, ok := unknown[p.NPI]; ok && (p.Cents < d || p.Cents-d > beforeMin) {
			out = append(out, fmt.Sprintf("provider %s listed with %d cents: this run added %d to a total that was at most %d", p.NPI, p.Cents, d, beforeMin))
		}
	}
	// Whoever is known to rank above the last listed provider must be listed.
	full := len(list) == loadkit.TopListMax
	var last int64
	if len(list) > 0 {
		last = list[len(list)-1].Cents
	}
	var missing []string
	for npi, want := range known {
		if !listed[npi] && want > 0 && (!full || want > last) {
			missing = append(missing, fmt.Sprintf("provider %s (%d cents) is missing", npi, want))
		}
	}
	for npi, d := range unknown {
		if !listed[npi] && d > 0 && (!full || d > last) {
			missing = append(missing, fmt.Sprintf("provider %s (at least %d cents) is missing", npi, d))
		}
	}
	slices.Sort(missing)
	return append(out, missing...)
}

// readTop reads /top-providers?limit=100, waiting out 429s until deadline:
// claimd rate limits it by default, and verification must not fail for that.
func (v *verifier) readTop(ctx context.Context, deadline time.Time) ([]loadkit.ProviderTotal, string, error) {
	for {
		status, body, err := v.l.do(ctx, http.MethodGet, fmt.Sprintf("/top-providers?limit=%d", loadkit.TopListMax), nil)
		if err != nil {
			return nil, "", err
		}
		if status == http.StatusTooManyRequests && time.Now().Before(deadline) {
			wait := 6 * time.Second // GCRA at 10/min frees one request every 6 s
			fmt.Fprintf(v.stderr, "claimbench: /top-providers is rate limited (429); waiting %s (run claimd with TOP_PROVIDERS_RATE_LIMIT=0 to avoid this)\n", wait)
			select {
			case <-time.After(min(wait, time.Until(deadline)+time.Second)):
			case <-ctx.Done():
				return nil, "", ctx.Err()
			}
			continue
		}
		if status != http.StatusOK {
			return nil, "", fmt.Errorf("answered %d: %.200s", status, body)
		}
		return loadkit.ParseTop(body)
	}
}
