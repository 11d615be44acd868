package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/events"
	"github.com/claim-process/claim-process/internal/store"
	"github.com/claim-process/claim-process/internal/testenv"
	"github.com/claim-process/claim-process/migrations"
)

// mustOutboxRows writes n events straight into the outbox and returns them
// with their seqs, in seq order.
func mustOutboxRows(t *testing.T, db *pgx.Conn, n int) []events.Row {
	t.Helper()
	rows := make([]events.Row, n)
	for i := range rows {
		rows[i] = events.Row{EventID: uuid.NewString(), RoutingKey: events.TypeStored, Body: fmt.Appendf(nil, `{"n":%d}`, i)}
		require.NoError(t, db.QueryRow(context.Background(),
			"INSERT INTO outbox (event_ids, routing_keys, body) VALUES (ARRAY[$1::uuid], ARRAY[$2::text], $3) RETURNING seq",
			rows[i].EventID, rows[i].RoutingKey, rows[i].Body).Scan(&rows[i].Seq))
	}
	return rows
}

// mustRelaySession takes the relay lock of st, which its session holds
// until the test ends.
func mustRelaySession(t *testing.T, st *store.Store) events.OutboxSession {
	t.Helper()
	session, ok, err := st.TryRelayLock(context.Background())
	require.NoError(t, err)
	require.True(t, ok)
	t.Cleanup(session.Close)
	return session
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

	session := mustRelaySession(t, st)
	unsent, oldest, err := st.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Zero(t, unsent)
	require.Zero(t, oldest)
	got, err := session.UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, got)

	rows := mustOutboxRows(t, db, 5)
	got, err = session.UnsentEvents(ctx, 3)
	require.NoError(t, err)
	require.Equal(t, rows[:3], got)

	require.NoError(t, session.MarkEventsSent(ctx, []int64{rows[0].Seq, rows[2].Seq}))
	got, err = session.UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []events.Row{rows[1], rows[3], rows[4]}, got)
	require.NoError(t, session.MarkEventsSent(ctx, nil))

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
	st, url := testenv.MustStore(t)
	ctx := context.Background()

	session, ok, err := st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.False(t, ok, "a second session must not take the relay lock")

	releaseReconcile, ok, err := st.TryReconcileLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "the relay lock must not hold the reconcile lock")
	releaseReconcile()

	session.Close()
	session2, ok, err := st.TryRelayLock(ctx)
	require.NoError(t, err)
	require.True(t, ok, "closing the session lets the lock go")

	// A session that ended under the relay (its backend terminated) lets the
	// lock go, and marks nothing more.
	rows := mustOutboxRows(t, mustConn(t, url), 1)
	db := mustConn(t, url)
	var ended bool
	require.NoError(t, db.QueryRow(ctx, `
SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = $1 AND objid = $2 AND objsubid = 1`, // the key's high and low 32 bits
		0x636c, 0x61696d65).Scan(&ended))
	require.True(t, ended)
	require.Error(t, session2.MarkEventsSent(ctx, []int64{rows[0].Seq}))
	session2.Close()
	var session3 events.OutboxSession
	require.Eventually(t, func() bool { // the ended backend lets its lock go as it exits
		session3, ok, err = st.TryRelayLock(ctx)
		require.NoError(t, err)
		return ok
	}, 10*time.Second, 10*time.Millisecond)
	defer session3.Close()
	got, err := session3.UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, rows, got, "the event is still unsent")
}

// A transaction's events are one row: read whole, in order, until the rows
// read hold the limit; a row leaves only as a whole.
func TestOutboxRowsHoldATransactionsEvents(t *testing.T) {
	t.Parallel()
	st, url := testenv.MustStore(t)
	db := mustConn(t, url)
	session := mustRelaySession(t, st)
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
		require.NoError(t, db.QueryRow(ctx, `INSERT INTO outbox (event_ids, routing_keys, body) VALUES ($1::uuid[], $2, $3) RETURNING seq`,
			ids, keys, bytes.Join(bodies, []byte("\n"))).Scan(&seq))
		for i := range ids {
			want = append(want, events.Row{Seq: seq, EventID: ids[i], RoutingKey: keys[i], Body: bodies[i]})
		}
	}
	for limit, n := range map[int]int{1: 3, 3: 3, 4: 5, 100: 5} {
		got, err := session.UnsentEvents(ctx, limit)
		require.NoError(t, err)
		require.Equal(t, want[:n], got, "limit %d", limit)
	}
	unsent, _, err := st.OutboxDepth(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(5), unsent, "events, not rows")
	require.NoError(t, session.MarkEventsSent(ctx, []int64{want[0].Seq}))
	got, err := session.UnsentEvents(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, want[3:], got)
}

// Migration 8 makes a waiting row's bodies one value, a line each, and its
// Down splits them again: events that wait across an upgrade, or a rollback,
// are relayed as they were written.
func TestOutboxMigrationKeepsWaitingEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.MustDatabase(t)
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer db.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	require.NoError(t, err)
	_, err = provider.DownTo(ctx, 7) // testenv's databases come migrated
	require.NoError(t, err)

	ids := []string{uuid.NewString(), uuid.NewString()}
	keys := []string{events.TypeReversed, events.TypeStored}
	bodies := [][]byte{[]byte(`{"i":0,"detail":"line\nbreak"}`), []byte(`{"i":1}`)}
	var seq int64
	conn := mustConn(t, url)
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO outbox (event_ids, routing_keys, bodies) VALUES ($1::uuid[], $2, $3) RETURNING seq`,
		ids, keys, bodies).Scan(&seq))
	_, err = provider.UpTo(ctx, 8)
	require.NoError(t, err)

	st, err := store.Open(ctx, url)
	require.NoError(t, err)
	defer st.Close()
	got, err := mustRelaySession(t, st).UnsentEvents(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []events.Row{
		{Seq: seq, EventID: ids[0], RoutingKey: keys[0], Body: bodies[0]},
		{Seq: seq, EventID: ids[1], RoutingKey: keys[1], Body: bodies[1]},
	}, got)

	_, err = provider.DownTo(ctx, 7)
	require.NoError(t, err)
	var back [][]byte
	require.NoError(t, conn.QueryRow(ctx, `SELECT bodies FROM outbox WHERE seq = $1`, seq).Scan(&back))
	require.Equal(t, bodies, back)
}
