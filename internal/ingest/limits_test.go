package ingest_test

import (
	"context"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/ingest"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/testenv"
)

// A batch whose sender stalls part-way holds no room in the queue: claims it
// sent are stored, and another client's batch goes through while it waits.
// (Before, each stalled batch held its share of the queue until its next
// claim arrived, and four of them starved every other batch.)
func TestStalledBatchesHoldNoRoom(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	// A queue of 8: batches may fill 4 places.
	svc := ingest.New(st, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}), ingest.Config{Backlog: 8}, prometheus.NewRegistry(), nil)
	t.Cleanup(svc.Close)

	stall := make(chan struct{})
	defer close(stall)
	stalled := func(name string) iter.Seq2[claim.Input, error] {
		return func(yield func(claim.Input, error) bool) {
			for i := range 4 { // the whole batch share
				if !yield(claimFor(t, fmt.Sprintf("%s-%d", name, i), "1000000001", 100).Input, nil) {
					return
				}
			}
			<-stall // the sender stops sending, and keeps the connection open
		}
	}
	stalledDone := make(chan struct{})
	for n := range 4 {
		go func() {
			svc.SubmitBatch(context.Background(), "stalled", stalled(fmt.Sprintf("s%d", n)), func(int, claim.Result, error) {})
			stalledDone <- struct{}{}
		}()
	}
	// Each stalled sender's claims are stored without waiting for the rest.
	require.Eventually(t, func() bool {
		top, err := st.TopProviders(context.Background(), 0, 1)
		return err == nil && len(top) == 1 && top[0].NetFee == 16*12000
	}, 10*time.Second, 10*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	one := func(yield func(claim.Input, error) bool) { yield(claimFor(t, "polite", "1000000002", 100).Input, nil) }
	var got error = fmt.Errorf("not reported")
	svc.SubmitBatch(ctx, "polite", one, func(_ int, res claim.Result, err error) {
		if got = err; err == nil && !res.Created {
			got = fmt.Errorf("not created")
		}
	})
	require.NoError(t, got, "another client's batch is stored while four batches stall")
	select {
	case <-stalledDone:
		t.Fatal("a stalled batch returned before its sender finished")
	default:
	}
}

// A client holds at most KeysPerClient idempotency keys: a claim with a new
// key past that is refused with a Retry-After, while a retry with a key it
// holds is answered and other clients are not affected; room comes back as
// keys expire.
func TestIdempotencyKeysCappedPerClient(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	rdb, prefix := testenv.MustSharedRedis(t)
	reg := prometheus.NewRegistry()
	svc := ingest.New(st, rank.NewRedis(rdb, rank.Keys{Prefix: prefix}),
		ingest.Config{KeysPerClient: 3, KeyTTL: time.Second}, reg, nil)
	t.Cleanup(svc.Close)
	ctx := context.Background()
	keyed := func(client, key string, fee int) claim.Submission {
		req := claimFor(t, "", "1000000001", fee)
		req.Client, req.IdempotencyKey = client, key
		return req
	}
	for i := range 3 {
		_, err := svc.Submit(ctx, keyed("a", fmt.Sprintf("k%d", i), 100+i))
		require.NoError(t, err)
	}
	_, err := svc.Submit(ctx, keyed("a", "k3", 103))
	require.ErrorIs(t, err, claim.ErrTooManyKeys)
	var ra *claim.RetryAfter
	require.ErrorAs(t, err, &ra)
	require.Equal(t, time.Minute, ra.After)
	require.ErrorIs(t, svc.AdmitKey(ctx, "a"), claim.ErrTooManyKeys, "async mode is held to the same cap")

	res, err := svc.Submit(ctx, keyed("a", "k1", 101))
	require.NoError(t, err, "a retry with a key the client holds is answered")
	require.True(t, res.Replayed)
	res, err = svc.Submit(ctx, keyed("a", "", 104))
	require.NoError(t, err, "claims without a key are not capped")
	_, err = svc.Submit(ctx, keyed("b", "k0", 100))
	require.NoError(t, err, "another client has its own allowance")
	n, err := st.CountKeys(ctx, "a", 100)
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "the refused key was not kept")

	time.Sleep(1100 * time.Millisecond) // the keys expire
	_, err = svc.KeyJanitor(time.Hour).RunOnce(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := svc.Submit(ctx, keyed("a", "k3", 103))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "expired keys leave the count")
}
