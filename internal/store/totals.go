package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// Walks provider_totals_rank from the top: O(limit), no aggregation.
const topProvidersSQL = `
SELECT provider_npi, total_net_fee_cents, version
FROM provider_totals
ORDER BY total_net_fee_cents DESC, provider_npi DESC
LIMIT $1`

// TopProviders returns the limit providers with the highest totals, highest
// first, equal totals by NPI descending: the order of Redis's ZREVRANGE.
func (s *Store) TopProviders(ctx context.Context, limit int) ([]claim.ProviderTotal, error) {
	rows, err := s.pool.Query(ctx, topProvidersSQL, limit)
	if err != nil {
		return nil, wrap("read top providers", err)
	}
	totals, err := pgx.CollectRows(rows, scanTotal)
	if err != nil {
		return nil, wrap("read top providers", err)
	}
	return totals, nil
}

const scanTotalsSQL = `SELECT provider_npi, total_net_fee_cents, version FROM provider_totals`

// ScanTotals streams every provider total, as of one snapshot taken when the
// scan starts, to fn in batches of at most batchSize.
func (s *Store) ScanTotals(ctx context.Context, batchSize int, fn func([]claim.ProviderTotal) error) error {
	rows, err := s.pool.Query(ctx, scanTotalsSQL)
	if err != nil {
		return wrap("scan provider totals", err)
	}
	defer rows.Close()
	batch := make([]claim.ProviderTotal, 0, batchSize)
	for rows.Next() {
		var t claim.ProviderTotal
		if err := rows.Scan(&t.ProviderNPI, &t.NetFee, &t.Version); err != nil {
			return wrap("scan provider totals", err)
		}
		batch = append(batch, t)
		if len(batch) == batchSize {
			if err := fn(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return wrap("scan provider totals", err)
	}
	if len(batch) > 0 {
		return fn(batch)
	}
	return nil
}

// reconcileLockKey is the advisory lock that lets one instance at a time
// reconcile the ranking. Any fixed number unlikely to clash will do.
const reconcileLockKey int64 = 0x636c61696d64 // "claimd"

// TryReconcileLock takes the reconciliation lock if no other instance holds
// it. The lock lives in a Postgres session held until release is called, or
// until the connection dies.
func (s *Store) TryReconcileLock(ctx context.Context) (release func(), ok bool, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, wrap("reconcile lock", err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", reconcileLockKey).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, wrap("reconcile lock", err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		_, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", reconcileLockKey)
		if err != nil {
			// The lock must not outlive us in a pooled session.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}, true, nil
}
