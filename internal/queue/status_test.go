package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/rank"
	"github.com/claim-process/claim-process/internal/testenv"
)

func queuedClaim(n int, client string) claim.Claim {
	return claim.Claim{ID: fmt.Sprintf("01a22487-af71-7a68-b316-%012d", n), Sender: client,
		ReceivedAt: time.Now().UTC(), Lines: []claim.Line{{ProviderFees: 1000}}}
}

// A queued claim's status belongs to its sender: another client (or an
// anonymous one) finds nothing under its id.
func TestQueuedStatusReadOnlyByItsClient(t *testing.T) {
	t.Parallel()
	rdb, prefix, _ := testenv.SuiteRedis(t)
	status := queue.NewStatus(rdb, rank.Keys{Prefix: prefix}, queue.StatusConfig{TTL: time.Hour})
	ctx := context.Background()
	c := queuedClaim(1, "key:aaaaaaaaaaaa")
	require.NoError(t, status.MarkQueued(ctx, c))

	st, found, err := status.Lookup(ctx, "key:aaaaaaaaaaaa", c.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, claim.StatusQueued, st.Status)
	require.Equal(t, claim.Cents(1000), st.NetFee)
	for _, other := range []string{"key:bbbbbbbbbbbb", ""} {
		_, found, err = status.Lookup(ctx, other, c.ID)
		require.NoError(t, err)
		require.False(t, found, "looked up as %q", other)
	}
}

// A client holds at most PerClient entries: the next claim is refused (and
// leaves no entry), other clients are not affected, and room comes back as
// entries are forgotten (stored) or expire.
func TestQueuedStatusCapPerClient(t *testing.T) {
	t.Parallel()
	rdb, prefix, _ := testenv.SuiteRedis(t)
	status := queue.NewStatus(rdb, rank.Keys{Prefix: prefix}, queue.StatusConfig{TTL: 500 * time.Millisecond, PerClient: 3})
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, status.MarkQueued(ctx, queuedClaim(i, "greedy")))
	}
	over := queuedClaim(3, "greedy")
	err := status.MarkQueued(ctx, over)
	require.ErrorIs(t, err, claim.ErrTooManyQueued)
	var ra *claim.RetryAfter
	require.ErrorAs(t, err, &ra)
	_, found, err := status.Lookup(ctx, "greedy", over.ID)
	require.NoError(t, err)
	require.False(t, found, "a refused claim leaves no entry")
	require.NoError(t, status.MarkQueued(ctx, queuedClaim(10, "other")), "another client is not affected")

	status.Forget("greedy", queuedClaim(0, "greedy").ID)
	require.NoError(t, status.MarkQueued(ctx, over), "a stored claim's place is free again")
	require.ErrorIs(t, status.MarkQueued(ctx, queuedClaim(4, "greedy")), claim.ErrTooManyQueued)

	time.Sleep(600 * time.Millisecond) // every entry expires
	for i := 20; i < 23; i++ {
		require.NoError(t, status.MarkQueued(ctx, queuedClaim(i, "greedy")), "expired entries leave the count")
	}
}

// GET /claims/{id} reads across Postgres and the queued status: a stored
// claim answers from Postgres alone; a claim never accepted is not found
// when the queued statuses are optional (sync mode) and Redis cannot say,
// and "unavailable" when they are not (async mode).
func TestStatusReaderAcrossPostgresAndQueue(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()
	stored := queuedClaim(7, "key:aaaaaaaaaaaa")
	stored.Lines[0] = claim.Line{ServiceDate: time.Date(2018, 3, 28, 0, 0, 0, 0, time.UTC), SubmittedProcedure: "D0180",
		PlanGroup: "GRP-1000", Subscriber: "3730189502", ProviderNPI: "1497775530", ProviderFees: 1000}
	b, err := st.InsertClaims(ctx, []claim.Pending{{Claim: stored}})
	require.NoError(t, err)
	require.NoError(t, b.Claims[0].Err)
	unknown := queuedClaim(8, "key:aaaaaaaaaaaa").ID

	// A Redis nobody listens on.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	deadStatus := queue.NewStatus(dead, rank.Keys{Prefix: "x:"}, queue.StatusConfig{})
	syncMode, asyncMode := queue.NewStatusReader(st, deadStatus, true), queue.NewStatusReader(st, deadStatus, false)
	for _, r := range []*queue.StatusReader{queue.NewStatusReader(st, nil, false), syncMode, asyncMode} {
		s, err := r.ClaimStatus(ctx, stored.Sender, stored.ID)
		require.NoError(t, err)
		require.Equal(t, claim.StatusStored, s.State)
		require.Equal(t, stored.ID, s.Claim.ID)
	}
	for _, r := range []*queue.StatusReader{queue.NewStatusReader(st, nil, false), syncMode} {
		_, err = r.ClaimStatus(ctx, "key:bbbbbbbbbbbb", stored.ID)
		require.ErrorIs(t, err, claim.ErrNotFound, "another client's claim")
		_, err = r.ClaimStatus(ctx, stored.Sender, unknown)
		require.ErrorIs(t, err, claim.ErrNotFound)
	}
	_, err = asyncMode.ClaimStatus(ctx, stored.Sender, unknown)
	require.ErrorIs(t, err, claim.ErrUnavailable)

	// Queued, then stored under an earlier claim's id: the reader follows it.
	rdb, prefix, _ := testenv.SuiteRedis(t)
	status := queue.NewStatus(rdb, rank.Keys{Prefix: prefix}, queue.StatusConfig{TTL: time.Hour})
	// The async mode's reader: it waits for Redis, where the sync mode's gives
	// Redis 100 ms, which a first lookup on a new cluster client (it loads
	// the slots) under -race can take.
	r := queue.NewStatusReader(st, status, false)
	waiting := queuedClaim(9, stored.Sender)
	require.NoError(t, status.MarkQueued(ctx, waiting))
	s, err := r.ClaimStatus(ctx, stored.Sender, waiting.ID)
	require.NoError(t, err)
	require.Equal(t, claim.StatusQueued, s.State)
	require.Equal(t, waiting.ID, s.ID)
	require.Equal(t, claim.Cents(1000), s.NetFee)
}
