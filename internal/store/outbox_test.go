package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/testenv"
)

// mustOutboxRows writes n events straight into the outbox and returns them
// with their seqs, in seq order.
func mustOutboxRows(t *testing.T, db *pgx.Conn, n int) []events.Row {
	t.Helper()
	rows := make([]events.Row, n)
	for i := range rows {
		rows[i] = events.Row{EventID: uuid.NewString(), RoutingKey: events.TypeStored, Body: fmt.Appendf(nil, `{"n":%d}`, i)}
		require.NoError(t, db.QueryRow(context.Background(),
			"INSERT INTO outbox (event_ids, routing_keys, bodies) VALUES (ARRAY[$1::uuid], ARRAY[$2::text], ARRAY[$3::bytea]) RETURNING seq",
			rows[i].EventID, rows[i].RoutingKey, rows[i].Body).Scan(&rows[i].Seq))
	}
	return rows
}

func mustConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	db, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close(context.Background()) })
	return db
}

func TestOutboxReadsUnsentInOrderAndMarksThemSent(t *testing.T) {
	t.Parallel()
	st, url := testenv.MustStore(t)
	db := mustConn(t, url)
	ctx := context.Background()

	unsent, oldest, err := st.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Zero(t, unsent)
	require.Zero(t, oldest)
	got, err := st.UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, got)

	rows := mustOutboxRows(t, db, 5)
	got, err = st.UnsentEvents(ctx, 3)
	require.NoError(t, err)
	require.Equal(t, rows[:3], got)

	require.NoError(t, st.MarkEventsSent(ctx, []int64{rows[0].Seq, rows[2].Seq}))
	got, err = st.UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []events.Row{rows[1], rows[3], rows[4]}, got)
	require.NoError(t, st.MarkEventsSent(ctx, nil))

	// The oldest unsent is rows[1]: make it ten minutes old.
	_, err = db.Exec(ctx, "UPDATE outbox SET created_at = now() - interval '10 minutes' WHERE seq = $1", rows[1].Seq)
	require.NoError(t, err)
	unsent, oldest, err = st.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(3), unsent)
	require.GreaterOrEqual(t, oldest, 10*time.Minute)
	require.Less(t, oldest, 11*time.Minute)
}

func TestRelayLockIsExclusiveAndNotTheReconcileLock(t *testing.T) {
	t.Parallel()
	st, _ := testenv.MustStore(t)
	ctx := context.Background()

	release, ok, err := st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a second session must not take the relay lock")

	releaseReconcile, ok, err := st.TryReconcileLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the relay lock must not hold the reconcile lock")
	releaseReconcile()

	release()
	release2, ok, err := st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	release2()
}

// A transaction's events are one row: read whole, in order, until the rows
// read hold the limit; a row leaves only as a whole.
func TestOutboxRowsHoldATransactionsEvents(t *testing.T) {
	t.Parallel()
	st, url := testenv.MustStore(t)
	db := mustConn(t, url)
	ctx := context.Background()
	var want []events.Row
	for _, n := range []int{3, 2} {
		var ids, keys []string
		var bodies [][]byte
		for i := range n {
			ids, keys = append(ids, uuid.NewString()), append(keys, events.TypeReversed)
			bodies = append(bodies, fmt.Appendf(nil, `{"i":%d}`, i))
		}
		var seq int64
		require.NoError(t, db.QueryRow(ctx, `INSERT INTO outbox (event_ids, routing_keys, bodies) VALUES ($1::uuid[], $2, $3) RETURNING seq`,
			ids, keys, bodies).Scan(&seq))
		for i := range ids {
			want = append(want, events.Row{Seq: seq, EventID: ids[i], RoutingKey: keys[i], Body: bodies[i]})
		}
	}
	for limit, n := range map[int]int{1: 3, 3: 3, 4: 5, 100: 5} {
		got, err := st.UnsentEvents(ctx, limit)
		require.NoError(t, err)
		require.Equal(t, want[:n], got, "limit %d", limit)
	}
	unsent, _, err := st.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(5), unsent, "events, not rows")
	require.NoError(t, st.MarkEventsSent(ctx, []int64{want[0].Seq}))
	got, err := st.UnsentEvents(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, want[3:], got)
}
