package faulttest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
)

// System is what the final checks look at: the Postgres database, the Redis
// server and key prefix, and a running claimd to ask for /top-providers.
type System struct {
	DatabaseURL string
	Redis       redis.UniversalClient // a standalone server's client or a cluster's
	KeyPrefix   string                // "" means claimd's default, rank.DefaultPrefix
	RankShards  int                   // claimd's RANK_SHARDS; 0 means 1
	API         string                // base URL of a running claimd
	APIKey      string                // the key the load's claims were sent with, to read them back; "" for none

	// Async: the claims were acknowledged with 202, before a worker stored
	// them. Verify then first waits, up to DrainTimeout (0: 60s), until every
	// acknowledged claim is in Postgres and the queue is empty, and then for
	// a whole reconciliation pass of the claimd at API.
	Async        bool
	RabbitURL    string // the broker of Queue
	Queue        string // the claims queue; dead letters are in Queue+".dead"
	DrainTimeout time.Duration
}

// Report is the end state of a scenario, for its closing log line.
type Report struct {
	Stored     int           // claims of this load stored in Postgres
	Duplicates int           // rows beyond the first of a claim_id of this load (each one is a failure)
	Drained    time.Duration // async: how long Verify waited for the queue to be drained
	Drift      int64         // cents: |totals-lines| + |redis-totals| + |api-expected|, summed over providers
}

// convergeTimeout bounds how long reconciliation may take to make Redis and
// /top-providers exact once the load is over (RECONCILE_INTERVAL is 1s).
const convergeTimeout = 15 * time.Second

// Verify checks the promise against Postgres, Redis and the API, polling up
// to convergeTimeout for reconciliation to finish, and fails the test with
// every problem it still finds then.
func Verify(t testing.TB, sys System, load *Load) Report {
	t.Helper()
	// What the clients heard is fixed now: check it once.
	var contract []string
	for _, c := range load.Claims {
		c.mu.Lock()
		for _, p := range c.problems {
			contract = append(contract, fmt.Sprintf("claim %s: %s", c.ExternalID, p))
		}
		if len(c.ids) > 1 {
			contract = append(contract, fmt.Sprintf("claim %s: 2xx answers named %d different ids: %v", c.ExternalID, len(c.ids), slices.Sorted(maps.Keys(c.ids))))
		}
		if c.acked && c.refusal != 0 {
			contract = append(contract, fmt.Sprintf("claim %s: acknowledged, and also refused with %d: %s", c.ExternalID, c.refusal, c.refusedAs))
		}
		c.mu.Unlock()
	}

	var drained time.Duration
	if sys.Async {
		drained = waitDrained(t, sys, load)
		waitReconciled(t, sys.API)
	}
	deadline := time.Now().Add(convergeTimeout)
	for {
		problems, report := check(sys, load)
		report.Drained = drained
		if len(problems) == 0 || time.Now().After(deadline) {
			problems = append(contract, problems...)
			if len(problems) > 0 {
				const show = 40
				more := ""
				if len(problems) > show {
					more = fmt.Sprintf("\n... and %d more", len(problems)-show)
					problems = problems[:show]
				}
				t.Fatalf("after %s of reconciliation, %d problems (drift %d cents):\n%s%s",
					convergeTimeout, len(problems), report.Drift, strings.Join(problems, "\n"), more)
			}
			return report
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// check compares everything once and lists what is wrong.
func check(sys System, load *Load) ([]string, Report) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	pg, err := readPostgres(sys.DatabaseURL)
	if err != nil {
		return []string{"read postgres: " + err.Error()}, Report{Drift: -1}
	}
	zset, err := readRanking(sys)
	if err != nil {
		bad("read redis ranking: %v", err)
	}
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	api, source, err := loadkit.GetTop(ctx, &http.Client{}, sys.API, "", loadkit.TopListMax)
	if err != nil {
		bad("GET /top-providers: %v", err)
	}

	// (a), (b): each claim is stored as its outcome requires, and whole.
	ours := map[string]bool{}
	expected := map[string]int64{} // NPI -> cents, from the generated lines of the stored claims, reversed ones 0
	// board and NPI -> cents and claims, likewise, for every board but the all-time one
	expectedBoards, expectedBoardClaims := map[string]int64{}, map[string]int64{}
	expectedClaims := map[string]int64{} // NPI -> stored claims with a line of it, reversed ones not counted
	report := Report{}
	for _, c := range load.Claims {
		ours[c.ExternalID] = true
		rows := pg.claims[c.ExternalID]
		outcome := c.Outcome()
		switch {
		case outcome == loadkit.Acked && len(rows) != 1:
			bad("(a) acknowledged claim %s is stored %d times", c.ExternalID, len(rows))
		case outcome == loadkit.Refused && len(rows) != 0:
			bad("(b) refused claim %s (status %d) is stored", c.ExternalID, c.refusal)
		case len(rows) > 1:
			bad("(a) %s claim %s is stored %d times", outcome, c.ExternalID, len(rows))
		}
		if len(rows) == 0 {
			continue
		}
		report.Stored++
		report.Duplicates += len(rows) - 1
		row := rows[0]
		if ids := c.AckedIDs(); outcome == loadkit.Acked && len(ids) == 1 && ids[0] != row.id {
			// In async mode a claim sent again after a 503 whose publish the
			// broker confirmed late is queued twice, under two ids; the one
			// stored second is a no-op, and GET /claims/{its id} answers
			// with the stored claim.
			if !sys.Async {
				bad("(a) claim %s was acknowledged as %s but is stored as %s", c.ExternalID, ids[0], row.id)
			} else if err := resolvesTo(sys, ids[0], row.id); err != nil {
				bad("(a) claim %s was acknowledged as %s but is stored as %s: %v", c.ExternalID, ids[0], row.id, err)
			}
		}
		if got, want := pg.lines[row.id], c.Lines; !sameLines(got, want) || row.netFee != c.NetFee() || row.lineCount != len(want) {
			bad("(a) claim %s is stored as %d lines %v (net %d, line_count %d), sent %d lines %v (net %d)",
				c.ExternalID, len(got), got, row.netFee, row.lineCount, len(want), storedLines(want), c.NetFee())
		}
		// (f) a claim is reversed exactly when a reversal of it was
		// acknowledged; one sent without a final answer may be either. A
		// reversed claim's lines count 0; a provider left with no claims in a
		// board is not listed there.
		reversalSent, reversed := c.Reversal()
		switch {
		case reversed && row.status != "reversed":
			bad("(f) claim %s: its reversal was acknowledged, but its status is %q", c.ExternalID, row.status)
		case !reversalSent && row.status != "stored":
			bad("(f) claim %s was never reversed, but its status is %q", c.ExternalID, row.status)
		}
		counted := map[string]bool{}
		for _, l := range c.Lines {
			if !counted[l.NPI] {
				counted[l.NPI] = true
				expectedClaims[l.NPI] += 0
				if row.status != "reversed" {
					expectedClaims[l.NPI]++
				}
			}
			fee := l.NetFee()
			if row.status == "reversed" {
				fee = 0
			}
			expected[l.NPI] += fee
			for _, b := range boardKeys(l.ServiceDate, l.PlanGroup) {
				k := b + " " + l.NPI
				expectedBoards[k] += fee
				if !counted[k] {
					counted[k] = true
					expectedBoardClaims[k] += 0
					if row.status != "reversed" {
						expectedBoardClaims[k]++
					}
				}
			}
		}
	}
	for ext, rows := range pg.claims {
		if !ours[ext] {
			bad("(a) Postgres holds %d claims with claim_id %q, which the load never sent", len(rows), ext)
		}
	}

	// (c) totals = sum of lines; (d) Redis = totals; (e) API = our own sums;
	// (g) every other board = our own sums and counts, from what was sent.
	report.Drift += diffTotals("(c) provider_totals vs SUM(claim_lines)", pg.totals, pg.lineSums, bad)
	report.Drift += diffTotals("(g) board_totals vs generated lines", pg.boards, expectedBoards, bad)
	diffTotals("(g) board_totals claims vs claims sent", pg.boardClaims, expectedBoardClaims, bad)
	diffTotals("(c) provider_totals claims vs claims sent", pg.providerClaims, expectedClaims, bad)
	if zset != nil {
		report.Drift += diffTotals("(d) Redis score vs provider_totals", zset, listed(pg.totals, pg.providerClaims), bad)
	}
	report.Drift += checkRedisBoards(sys, listed(expectedBoards, expectedBoardClaims), bad)
	if api != nil {
		if source != "redis" {
			bad("(e) /top-providers answered from %q, want redis once reconciled", source)
		}
		want := loadkit.TopN(listed(expected, expectedClaims), loadkit.TopListMax)
		report.Drift += diffTotals("(e) /top-providers vs generated lines", toMap(api), toMap(want), bad)
		if !slices.Equal(api, want) {
			bad("(e) /top-providers order:\n got  %v\n want %v", api, want)
		}
	}
	return problems, report
}

// listed is the totals of those with claims: the ranking lists no
// provider whose claims (in a board) were all reversed.
func listed(totals, claims map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(totals))
	for k, cents := range totals {
		if claims[k] > 0 {
			out[k] = cents
		}
	}
	return out
}

// checkRedisBoards is check (h): every board Redis keeps (by the default
// RANK_RETENTION, today) holds exactly the totals worked out from what was
// sent (expected, by "<board> <NPI>"), every provider at its place; and
// /top-providers answers the year 2025 board (the loads' dates) from Redis
// in that order. It returns the drift found.
func checkRedisBoards(sys System, expected map[string]int64, bad func(string, ...any)) int64 {
	keep := map[string]bool{}
	want := map[string]int64{}
	byBoard := map[string]map[string]int64{}
	for k, cents := range expected {
		board, npi, _ := strings.Cut(k, " ")
		b, ok := claim.ParseBoardKey(board)
		if !ok {
			bad("(h) the service names no board %q", board)
			continue
		}
		if keep[board] = claim.DefaultRetention.Keeps(b, time.Now()); keep[board] {
			want[k] = cents
			if byBoard[board] == nil {
				byBoard[board] = map[string]int64{}
			}
			byBoard[board][npi] = cents
		}
	}
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	keys := rank.Keys{Prefix: cmp.Or(sys.KeyPrefix, rank.DefaultPrefix), Shards: sys.RankShards}
	boards, err := loadkit.BoardRankings(ctx, sys.Redis, keys, slices.Sorted(maps.Keys(byBoard)))
	if err != nil {
		bad("(h) read redis boards: %v", err)
		return 0
	}
	got := map[string]int64{}
	for board, members := range boards {
		for npi, cents := range members {
			got[board+" "+npi] = cents
		}
	}
	drift := diffTotals("(h) Redis boards vs generated lines", got, want, bad)
	if year := byBoard["y:2025"]; len(year) > 0 {
		api, source, err := loadkit.GetBoardTop(ctx, &http.Client{}, sys.API, "", "window=year&period=2025", loadkit.TopListMax)
		switch {
		case err != nil:
			bad("(h) GET /top-providers?window=year&period=2025: %v", err)
		case source != "redis":
			bad("(h) the year 2025 board answered from %q, want redis", source)
		case !slices.Equal(api, loadkit.TopN(year, loadkit.TopListMax)):
			bad("(h) the year 2025 board's order:\n got  %v\n want %v", api, loadkit.TopN(year, loadkit.TopListMax))
		}
	}
	return drift
}

type storedClaim struct {
	id        string
	netFee    int64
	lineCount int
	status    string // stored or reversed
}

type storedLine struct {
	NPI    string
	NetFee int64
}

type pgState struct {
	claims   map[string][]storedClaim // claim_id (external_id) -> rows
	lines    map[string][]storedLine  // claims.id -> lines in line_no order
	totals   map[string]int64         // provider_totals
	lineSums map[string]int64         // SUM(claim_lines.net_fee_cents) GROUP BY provider_npi
	// boards and boardClaims are board_totals's totals and claim counts, by
	// "<board> <NPI>".
	boards, boardClaims map[string]int64
	providerClaims      map[string]int64 // provider_totals.claims
}

// boardKeys names the boards other than the all-time one that a line of
// plan/group plan served on date (YYYY-MM-DD) counts toward, as the service
// names them (claim.Board.Key), worked out here from the line as sent: its
// day, ISO week, month and year, and its plan/group's all-time and month.
func boardKeys(date, plan string) []string {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return nil
	}
	year, week := d.ISOWeek()
	return []string{"d:" + date, fmt.Sprintf("w:%04d-W%02d", year, week), "m:" + date[:7], "y:" + date[:4],
		"a|g:" + plan, "m:" + date[:7] + "|g:" + plan}
}

// resolvesTo checks, in async mode, that GET /claims/{acked} answers with
// the claim stored as id.
func resolvesTo(sys System, acked, id string) error {
	status, got, err := getClaim(sys.API, sys.APIKey, acked)
	switch {
	case err != nil:
		return err
	case status != http.StatusOK || got.ID != id || got.Status != "stored":
		return fmt.Errorf("GET /claims/%s answered %d with id %q, status %q", acked, status, got.ID, got.Status)
	}
	return nil
}

// ClaimState is what GET /claims/{id} says of a claim.
type ClaimState struct {
	ID      string      `json:"id"`
	ClaimID string      `json:"claim_id"`
	Status  string      `json:"status"` // stored, queued or dead_lettered
	NetFee  json.Number `json:"net_fee"`
}

// getClaim asks base for GET /claims/{id}, with the API key when not "".
func getClaim(base, apiKey, id string) (int, ClaimState, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest(http.MethodGet, base+"/claims/"+id, nil)
	if err != nil {
		return 0, ClaimState{}, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, ClaimState{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ClaimState{}, err
	}
	var st ClaimState
	if resp.StatusCode == http.StatusOK {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&st); err != nil {
			return resp.StatusCode, st, fmt.Errorf("decode %s: %w", loadkit.Snippet(body), err)
		}
	}
	return resp.StatusCode, st, nil
}

// waitDrained waits until every acknowledged claim of the load is in
// Postgres and the queue holds no message, and returns how long that took.
// An acknowledged claim in the dead-letter queue is a failure at once: no
// worker will store it unless an operator replays it.
func waitDrained(t testing.TB, sys System, load *Load) time.Duration {
	t.Helper()
	timeout := cmp.Or(sys.DrainTimeout, 60*time.Second)
	var acked []string
	byID := map[string]*Claim{}
	for _, c := range load.Claims {
		if c.Outcome() == loadkit.Acked {
			acked = append(acked, c.ExternalID)
			byID[c.ExternalID] = c
		}
	}
	// fail shows the missing claims, those named first (the dead-lettered).
	fail := func(why string, missing []string, first map[string]bool, depth, dead int) {
		t.Helper()
		slices.SortStableFunc(missing, func(a, b string) int {
			switch {
			case first[a] == first[b]:
				return 0
			case first[a]:
				return -1
			}
			return 1
		})
		var show []string
		for _, ext := range missing[:min(10, len(missing))] {
			c := byID[ext]
			show = append(show, fmt.Sprintf("%s (key %q, acknowledged as %v; answers %v)", ext, c.Key, c.AckedIDs(), c.History()))
		}
		t.Fatalf("%s: %d of %d acknowledged claims not in Postgres; queue %s holds %d ready messages and its dead-letter queue %d; "+
			"missing claims include:\n%s\ndead letters include:\n%s",
			why, len(missing), len(acked), sys.Queue, depth, dead, strings.Join(show, "\n"), describeDeadLetters(sys, 10))
	}
	start := time.Now()
	lastLog := start
	for {
		missing, err := missingClaims(sys.DatabaseURL, acked)
		depth, dead, qerr := queueDepths(sys)
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			t.Logf("draining for %s: %d acknowledged claims not in Postgres yet, queue holds %d ready messages, dead-letter queue %d",
				time.Since(start).Round(time.Second), len(missing), depth, dead)
		}
		if err == nil && qerr == nil {
			if len(missing) == 0 && depth == 0 {
				if dead != 0 {
					fail("every acknowledged claim is stored, but the dead-letter queue is not empty", nil, nil, depth, dead)
				}
				took := time.Since(start)
				t.Logf("queue drained: all %d acknowledged claims stored, queue %s empty, after waiting %s",
					len(acked), sys.Queue, took.Round(time.Millisecond))
				return took
			}
			if dead > 0 && len(missing) > 0 {
				dl, err := deadLetterIDs(sys)
				dlq := map[string]bool{}
				for _, ext := range missing {
					for _, id := range byID[ext].AckedIDs() {
						if dl[id] {
							dlq[ext] = true
						}
					}
				}
				if err == nil && len(dlq) > 0 {
					fail(fmt.Sprintf("%d acknowledged (202) claims were dead-lettered", len(dlq)), missing, dlq, depth, dead)
				}
			}
		}
		if time.Now().After(start.Add(timeout)) {
			fail(fmt.Sprintf("queue not drained after %s (postgres error: %v, broker error: %v)", timeout, err, qerr), missing, nil, depth, dead)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// missingClaims lists the claim_ids (external ids) not in Postgres.
func missingClaims(url string, want []string) ([]string, error) {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return want, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT DISTINCT external_id FROM claims WHERE external_id = ANY($1)`, want)
	if err != nil {
		return want, err
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return want, err
	}
	have := make(map[string]bool, len(stored))
	for _, ext := range stored {
		have[ext] = true
	}
	var missing []string
	for _, ext := range want {
		if !have[ext] {
			missing = append(missing, ext)
		}
	}
	return missing, nil
}

// queueDepths is how many messages (ready for delivery) the claims queue and
// its dead-letter queue hold.
func queueDepths(sys System) (claims, dead int, err error) {
	conn, err := amqp.DialConfig(sys.RabbitURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return -1, -1, err
	}
	defer conn.Close()
	depth := func(name string) (int, error) {
		ch, err := conn.Channel()
		if err != nil {
			return -1, err
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		return q.Messages, err
	}
	claims, err = depth(sys.Queue)
	if err != nil {
		return -1, -1, err
	}
	dead, err = depth(sys.Queue + ".dead")
	return claims, dead, err
}

// deadLetterIDs lists the message ids in the dead-letter queue. It leaves
// the messages there.
func deadLetterIDs(sys System) (map[string]bool, error) {
	conn, err := amqp.DialConfig(sys.RabbitURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close() // gives the messages back
	ids := map[string]bool{}
	for {
		m, ok, err := ch.Get(sys.Queue+".dead", false)
		if err != nil || !ok {
			return ids, err
		}
		ids[m.MessageId] = true
	}
}

// describeDeadLetters describes up to n messages of the dead-letter queue,
// with the broker's records of why and how often they were delivered, for a
// failure message. It leaves them in the queue.
func describeDeadLetters(sys System, n int) string {
	conn, err := amqp.DialConfig(sys.RabbitURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err.Error()
	}
	defer ch.Close() // gives the messages back
	var out []string
	for range n {
		m, ok, err := ch.Get(sys.Queue+".dead", false)
		if err != nil {
			out = append(out, err.Error())
			break
		}
		if !ok {
			break
		}
		out = append(out, fmt.Sprintf("message %s (%d bytes, redelivered %v): headers %v", m.MessageId, len(m.Body), m.Redelivered, m.Headers))
	}
	return strings.Join(out, "\n")
}

// waitReconciled waits for a whole reconciliation pass of the claimd at api
// that began after the call: two more passes completed.
func waitReconciled(t testing.TB, api string) {
	t.Helper()
	ctx, cancel := withTimeout(convergeTimeout + 5*time.Second)
	defer cancel()
	before, err := loadkit.ReconcilePasses(ctx, api)
	if err == nil {
		err = loadkit.WaitReconciled(ctx, api, before+2, 50*time.Millisecond, convergeTimeout)
	}
	if err != nil {
		t.Fatalf("waiting for a whole reconciliation pass of %s after the queue was drained: %v", api, err)
	}
}

// inSnapshot runs read in one repeatable-read, read-only transaction of the
// database at url, so the tables it reads are seen at one point in time.
func inSnapshot(url string, read func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	return read(ctx, tx)
}

// readPostgres reads everything in one snapshot, so the tables are compared
// at one point in time.
func readPostgres(url string) (*pgState, error) {
	st := &pgState{claims: map[string][]storedClaim{}, lines: map[string][]storedLine{}, totals: map[string]int64{},
		providerClaims: map[string]int64{}, boards: map[string]int64{}, boardClaims: map[string]int64{}}
	err := inSnapshot(url, func(ctx context.Context, tx pgx.Tx) error {
		var (
			ext, key      string
			c             storedClaim
			l             storedLine
			total, claims int64
		)
		reads := []struct {
			sql  string
			scan []any
			row  func()
		}{
			{`SELECT id::text, COALESCE(external_id, ''), net_fee_cents, line_count, status FROM claims`,
				[]any{&c.id, &ext, &c.netFee, &c.lineCount, &c.status},
				func() { st.claims[ext] = append(st.claims[ext], c) }},
			{`SELECT claim_id::text, provider_npi, net_fee_cents FROM claim_lines ORDER BY claim_id, line_no`,
				[]any{&key, &l.NPI, &l.NetFee},
				func() { st.lines[key] = append(st.lines[key], l) }},
			{`SELECT provider_npi, total_net_fee_cents, claims FROM provider_totals`,
				[]any{&key, &total, &claims},
				func() { st.totals[key], st.providerClaims[key] = total, claims }},
			{`SELECT board || ' ' || provider_npi, total_net_fee_cents, claims FROM board_totals`,
				[]any{&key, &total, &claims},
				func() { st.boards[key], st.boardClaims[key] = total, claims }},
		}
		for _, r := range reads {
			rows, err := tx.Query(ctx, r.sql)
			if err != nil {
				return err
			}
			if _, err := pgx.ForEachRow(rows, r.scan, func() error { r.row(); return nil }); err != nil {
				return err
			}
		}
		var err error
		st.lineSums, err = loadkit.LineSums(ctx, tx)
		return err
	})
	return st, err
}

// readRanking reads the whole Redis sorted set claimd keeps.
func readRanking(sys System) (map[string]int64, error) {
	ctx, cancel := withTimeout(5 * time.Second)
	defer cancel()
	return loadkit.Ranking(ctx, sys.Redis, rank.Keys{Prefix: cmp.Or(sys.KeyPrefix, rank.DefaultPrefix), Shards: sys.RankShards})
}

func toMap(ps []loadkit.ProviderTotal) map[string]int64 {
	out := make(map[string]int64, len(ps))
	for _, p := range ps {
		out[p.NPI] = p.Cents
	}
	return out
}

// diffTotals reports every provider whose total differs (missing counts as
// a difference even when the other side is 0) and returns the drift in cents.
func diffTotals(what string, got, want map[string]int64, bad func(string, ...any)) int64 {
	var drift int64
	for _, npi := range slices.Sorted(maps.Keys(union(got, want))) {
		g, gok := got[npi]
		w, wok := want[npi]
		if g != w || gok != wok {
			drift += abs(g - w)
			bad("%s: provider %s has %s (present %v), want %s (present %v)", what, npi, loadkit.FormatCents(g), gok, loadkit.FormatCents(w), wok)
		}
	}
	return drift
}

func sameLines(stored []storedLine, sent []loadkit.Line) bool {
	return slices.Equal(stored, storedLines(sent))
}

func storedLines(sent []loadkit.Line) []storedLine {
	out := make([]storedLine, len(sent))
	for i, l := range sent {
		out[i] = storedLine{l.NPI, l.NetFee()}
	}
	return out
}

func union[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// LogReport writes the scenario's closing line: what was sent, what was
// acknowledged, stored and deduplicated, and the final drift.
func LogReport(t testing.TB, scenario string, load *Load, r Report) {
	t.Helper()
	s, n := load.Sender.Stats, load.Count()
	drained := ""
	if r.Drained > 0 {
		drained = fmt.Sprintf(", then waited %s for the queue to be drained", r.Drained.Round(time.Millisecond))
	}
	t.Logf("scenario %s: claims %d, requests sent %d, acknowledged %d, refused %d, unknown %d, stored %d (duplicates %d); "+
		"answers: 201 %d, 202 (queued) %d, 200 (resubmitted claim_id) %d, replayed (Idempotency-Replayed) %d, 409 %d, 503 %d, "+
		"other 5xx %d, no answer %d (client timeouts %d); load took %s%s; final drift %d cents",
		scenario, len(load.Claims), s.Requests.Load(), n[loadkit.Acked], n[loadkit.Refused], n[loadkit.Unknown], r.Stored, r.Duplicates,
		s.Created.Load(), s.Accepted.Load(), s.OK.Load(), s.Replayed.Load(), s.Conflict.Load(), s.Unavailable.Load(),
		s.Other5xx.Load(), s.NoAnswer.Load(), s.TimedOut.Load(), load.Elapsed.Round(time.Millisecond), drained, r.Drift)
}
