package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/queue"
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
	rdb, prefix := testenv.MustSharedRedis(t)
	status := queue.NewStatus(rdb, prefix, time.Hour)
	ctx := context.Background()
	c := queuedClaim(1, "key:aaaaaaaaaaaa")
	require.NoError(t, status.MarkQueued(ctx, c))

	st, found, err := status.Lookup(ctx, "key:aaaaaaaaaaaa", c.ID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, queue.StatusQueued, st.Status)
	require.Equal(t, claim.Cents(1000), st.NetFee)
	for _, other := range []string{"key:bbbbbbbbbbbb", ""} {
		_, found, err = status.Lookup(ctx, other, c.ID)
		require.NoError(t, err)
		require.False(t, found, "looked up as %q", other)
	}
}
