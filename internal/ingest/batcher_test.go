package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
)

// claimFor is a one-line claim for npi with a net fee of fee + 20 dollars,
// under claimID when it is not "".
func claimFor(t *testing.T, claimID, npi string, fee int) claim.Submission {
	t.Helper()
	line := strings.Replace(sampleLine, "1497775535", npi, 1)
	line = strings.Replace(line, `"provider_fees": 150`, fmt.Sprintf(`"provider_fees": %d`, fee), 1)
	body := `{"lines": [` + line + `]}`
	if claimID != "" {
		body = fmt.Sprintf(`{"claim_id": %q, "lines": [%s]}`, claimID, line)
	}
	return mustRequest(t, body)
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

// Concurrent requests share one transaction, and each gets its own answer.
func TestGroupCommitSharesOneTransaction(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	ranking := rank.NewRedis(rdb, rank.Keys{Prefix: prefix})
	reg := prometheus.NewRegistry()
	const n = 20
	// A batch is flushed when it is full: with a wait this long, only then.
	svc := ingest.New(st, ranking, ingest.Config{BatchSize: n, BatchWait: time.Hour, Writers: 1}, reg, nil)
	t.Cleanup(svc.Close)

	var wg sync.WaitGroup
	results := make([]claim.Result, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = svc.Submit(context.Background(), claimFor(t, "", fmt.Sprintf("10000000%02d", i%5), 100))
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		require.True(t, results[i].Created)
		ids[results[i].Claim.ID] = true
		stored, err := st.Claim(context.Background(), "", results[i].Claim.ID)
		require.NoError(t, err)
		require.Equal(t, results[i].Claim.Lines, stored.Lines)
	}
	require.Len(t, ids, n)
	count, sum := histogramCount(t, reg, "claimd_ingest_batch_claims")
	require.Equal(t, uint64(1), count, "one transaction")
	require.Equal(t, float64(n), sum)

	keys := rank.Keys{Prefix: prefix}
	scores, err := loadkit.Ranking(context.Background(), rdb, keys)
	require.NoError(t, err)
	require.Len(t, scores, 5)
	for _, score := range scores {
		require.Equal(t, int64(4*12000), score, "each provider moved by its four claims")
	}
	versions, err := loadkit.RankVersions(context.Background(), rdb, keys)
	require.NoError(t, err)
	require.Len(t, versions, 5)
	for npi, v := range versions {
		require.Equal(t, int64(1), v, "%s changed once", npi)
	}
}

// poisonStore refuses any batch holding the claim with claim_id "poison", as
// Postgres would refuse a batch with one row it cannot take.
type poisonStore struct{ *store.Store }

func (p poisonStore) InsertClaims(ctx context.Context, batch []claim.Pending) (claim.StoredBatch, error) {
	for _, item := range batch {
		if item.Claim.ExternalID == "poison" {
			return claim.StoredBatch{}, errors.New("ERROR: value out of range (SQLSTATE 22003)")
		}
	}
	return p.Store.InsertClaims(ctx, batch)
}

// One claim the database refuses fails alone: the others of its batch are
// stored and answered as usual.
func TestGroupCommitOneBadClaimFailsAlone(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	reg := prometheus.NewRegistry()
	svc := ingest.New(poisonStore{st}, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}),
		ingest.Config{BatchSize: 5, BatchWait: time.Hour, Writers: 1}, reg, testenv.Logger(t))
	t.Cleanup(svc.Close)

	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range 5 {
		id := fmt.Sprintf("good-%d", i)
		if i == 2 {
			id = "poison"
		}
		wg.Go(func() { _, errs[i] = svc.Submit(context.Background(), claimFor(t, id, "1000000001", 100)) })
	}
	wg.Wait()
	for i, err := range errs {
		if i == 2 {
			require.ErrorContains(t, err, "out of range")
			continue
		}
		require.NoError(t, err)
	}
	top, err := st.TopProviders(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Equal(t, claim.Cents(4*12000), top[0].NetFee)
	require.Equal(t, 1.0, metricValue(t, reg, "claimd_ingest_batch_fallbacks_total"))
}

// metricValue is the value of the counter or gauge name, with no labels.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			m := f.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// gatedStore holds every batch until the test lets it through.
type gatedStore struct {
	*store.Store
	entered chan struct{}
	release chan struct{}
}

func (g gatedStore) InsertClaims(ctx context.Context, batch []claim.Pending) (claim.StoredBatch, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Store.InsertClaims(ctx, batch)
}

// A full queue refuses at once with claim.ErrBusy; a request that gives up
// while queued is not stored; Close stores what is queued.
func TestGroupCommitQueueBounds(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	gate := gatedStore{Store: st, entered: make(chan struct{}, 10), release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	svc := ingest.New(gate, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}),
		ingest.Config{BatchSize: 1, Writers: 1, Backlog: 2}, reg, nil)

	type answer struct {
		res claim.Result
		err error
	}
	submit := func(ctx context.Context, id string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, err := svc.Submit(ctx, claimFor(t, id, "1000000001", 100))
			ch <- answer{res, err}
		}()
		return ch
	}
	first := submit(context.Background(), "first")
	<-gate.entered // the writer holds "first"
	gaveUp, giveUp := context.WithCancel(context.Background())
	quitter := submit(gaveUp, "quitter")
	second := submit(context.Background(), "second")
	require.Eventually(t, func() bool { return metricValue(t, reg, "claimd_ingest_queue_claims") == 2 },
		10*time.Second, time.Millisecond)
	_, err := svc.Submit(context.Background(), claimFor(t, "third", "1000000001", 100))
	require.ErrorIs(t, err, claim.ErrBusy, "two queued: the next is refused")
	var retry *claim.RetryAfter
	require.ErrorAs(t, err, &retry)
	require.Equal(t, time.Second, retry.After)

	giveUp()
	// A request that gives up while its claim is queued is answered at once,
	// not when a writer reaches the claim (the writer is still held here).
	select {
	case a := <-quitter:
		require.ErrorIs(t, a.err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("a request that gave up waits for the writer")
	}
	go func() {
		for range gate.entered {
			gate.release <- struct{}{}
		}
	}()
	gate.release <- struct{}{}
	require.NoError(t, (<-first).err)
	svc.Close() // returns once "second" is stored and answered
	a := <-second
	require.NoError(t, a.err)

	_, err = svc.Submit(context.Background(), claimFor(t, "late", "1000000001", 100))
	require.ErrorIs(t, err, claim.ErrUnavailable, "closed")
	top, err := st.TopProviders(context.Background(), 0, 10)
	require.NoError(t, err)
	require.Equal(t, claim.Cents(2*12000), top[0].NetFee, "first and second only")
}

// The money counters add up each stored claim's components once; a claim
// found stored already adds nothing.
func TestMoneyIngestedByComponent(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	reg := prometheus.NewRegistry()
	svc := ingest.New(st, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}), ingest.Config{}, reg, nil)
	t.Cleanup(svc.Close)
	ctx := context.Background()
	for _, req := range []claim.Submission{
		claimFor(t, "m-1", "1000000001", 150), claimFor(t, "m-2", "1000000002", 250), claimFor(t, "m-1", "1000000001", 150),
	} {
		_, err := svc.Submit(ctx, req)
		require.NoError(t, err)
	}
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "claimd_ingested_money_cents_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	require.Equal(t, map[string]float64{
		"provider_fees": 40000, "allowed_fees": 2000, "member_coinsurance": 2000, "member_copay": 4000,
	}, got)
}
