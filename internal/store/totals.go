package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/claim-process/claim-process/internal/claim"
)

// Walks provider_totals_rank from the top: O(offset + limit), no
// aggregation. A provider whose claims were all reversed is not listed
// (claims 0: the index's predicate).
const topProvidersSQL = `
SELECT ` + totalColumns + `
FROM provider_totals WHERE claims > 0
ORDER BY total_net_fee_cents DESC, provider_npi DESC
OFFSET $1 LIMIT $2`

// CountProviders says how many providers have a total.
func (s *Store) CountProviders(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT count(*) FROM provider_totals").Scan(&n)
	return n, wrap("count providers", err)
}

// TopProviders returns limit providers from the offset-th (from 0), highest
// total first, equal totals by NPI descending: the order of Redis's
// ZREVRANGE.
func (s *Store) TopProviders(ctx context.Context, offset, limit int) ([]claim.ProviderTotal, error) {
	rows, err := s.pool.Query(ctx, topProvidersSQL, offset, limit)
	if err != nil {
		return nil, wrap("read top providers", err)
	}
	totals, err := pgx.CollectRows(rows, scanTotal)
	if err != nil {
		return nil, wrap("read top providers", err)
	}
	return totals, nil
}

// providerRankSQL counts the providers listed before this one through
// provider_totals_rank: O(rank), an index-only range.
const providerRankSQL = `
SELECT t.total_net_fee_cents, t.claims,
       1 + (SELECT count(*) FROM provider_totals o
            WHERE o.claims > 0 AND (o.total_net_fee_cents, o.provider_npi) > (t.total_net_fee_cents, t.provider_npi))
FROM provider_totals t WHERE t.provider_npi = $1`

// ProviderRank answers npi's total, rank (1-based, in TopProviders's order)
// and count of stored claims; claim.ErrNotFound when it has no total, or
// its claims were all reversed.
func (s *Store) ProviderRank(ctx context.Context, npi string) (claim.Standing, error) {
	return scanStanding(s.pool.QueryRow(ctx, providerRankSQL, npi), npi, "read provider rank")
}

// scanStanding reads npi's standing from row (total, claims, rank):
// claim.ErrNotFound when there is none, or no claims.
func scanStanding(row pgx.Row, npi, what string) (claim.Standing, error) {
	st := claim.Standing{ProviderNPI: npi}
	err := row.Scan(&st.NetFee, &st.Claims, &st.Rank)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return claim.Standing{}, claim.ErrNotFound
	case err != nil:
		return claim.Standing{}, wrap(what, err)
	case st.Claims == 0:
		return claim.Standing{}, claim.ErrNotFound
	}
	return st, nil
}

// boardTopSQL and boardRankSQL are topProvidersSQL and providerRankSQL for a
// board of board_totals, through board_totals_rank.
const (
	boardTopSQL = `
SELECT provider_npi, total_net_fee_cents, version, claims
FROM board_totals WHERE board = $1 AND claims > 0
ORDER BY total_net_fee_cents DESC, provider_npi DESC
OFFSET $2 LIMIT $3`
	boardRankSQL = `
SELECT t.total_net_fee_cents, t.claims,
       1 + (SELECT count(*) FROM board_totals o WHERE o.board = t.board AND o.claims > 0
            AND (o.total_net_fee_cents, o.provider_npi) > (t.total_net_fee_cents, t.provider_npi))
FROM board_totals t WHERE t.board = $1 AND t.provider_npi = $2`
)

// BoardTop is TopProviders of board b.
func (s *Store) BoardTop(ctx context.Context, b claim.Board, offset, limit int) ([]claim.ProviderTotal, error) {
	if b.IsAllTime() {
		return s.TopProviders(ctx, offset, limit)
	}
	rows, err := s.pool.Query(ctx, boardTopSQL, b.Key(), offset, limit)
	if err != nil {
		return nil, wrap("read board", err)
	}
	totals, err := pgx.CollectRows(rows, scanTotal)
	return totals, wrap("read board", err)
}

// BoardRank is ProviderRank in board b.
func (s *Store) BoardRank(ctx context.Context, b claim.Board, npi string) (claim.Standing, error) {
	if b.IsAllTime() {
		return s.ProviderRank(ctx, npi)
	}
	return scanStanding(s.pool.QueryRow(ctx, boardRankSQL, b.Key(), npi), npi, "read board rank")
}

// scanTotalsSQL reads the all-time totals (board "") and those of the
// boards the live ranking keeps (keptBoards). Each board's highest first, off its
// rank index: Redis adds members to a sorted set about twice as fast in
// score order as at random, and a rebuild is mostly those additions. $1
// limits it to totals changed at or after it.
var scanTotalsSQL = `
SELECT '' AS board, ` + totalColumns + ` FROM provider_totals
WHERE $1::timestamptz IS NULL OR updated_at >= $1
UNION ALL
SELECT board, ` + totalColumns + ` FROM board_totals
WHERE ($1::timestamptz IS NULL OR updated_at >= $1) AND ` + keptBoards(2) + `
ORDER BY 1, 3 DESC, 2 DESC`

// keptBoards selects the boards the live ranking keeps: the plans'
// all-time boards and, per window, those from the oldest kept, its
// parameters $first to $first+3 (day, week, month, year; keptArgs). Board
// keys of a window sort as their periods do.
func keptBoards(first int) string {
	return fmt.Sprintf(`((board >= 'a|g:' AND board < 'a|g;') OR (board >= $%d AND board < 'd;')
  OR (board >= $%d AND board < 'w;') OR (board >= $%d AND board < 'm;') OR (board >= $%d AND board < 'y;'))`,
		first, first+1, first+2, first+3)
}

// keptArgs are keptBoards's bounds from oldest (see
// claim.Retention.Oldest).
func keptArgs(oldest map[claim.Window]string) []any {
	return []any{oldest[claim.WindowDay], oldest[claim.WindowWeek], oldest[claim.WindowMonth], oldest[claim.WindowYear]}
}

// ScanTotals streams the totals of the all-time board and of every board
// the live ranking keeps (from oldest, see claim.Retention.Oldest), as of
// one snapshot taken when the scan starts, to fn in batches of at most
// batchSize: all of them when since is zero, else those changed at or after
// since. It returns the database's clock just before the scan, for the next
// scan's since.
func (s *Store) ScanTotals(ctx context.Context, since time.Time, oldest map[claim.Window]string, batchSize int, fn func([]claim.ProviderTotal) error) (time.Time, error) {
	var startedAt time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&startedAt); err != nil {
		return time.Time{}, wrap("scan provider totals", err)
	}
	var sinceArg *time.Time
	if !since.IsZero() {
		sinceArg = &since
	}
	rows, err := s.pool.Query(ctx, scanTotalsSQL, append([]any{sinceArg}, keptArgs(oldest)...)...)
	if err != nil {
		return time.Time{}, wrap("scan provider totals", err)
	}
	defer rows.Close()
	batch := make([]claim.ProviderTotal, 0, batchSize)
	for rows.Next() {
		var t claim.ProviderTotal
		if err := rows.Scan(&t.Board, &t.ProviderNPI, &t.NetFee, &t.Version, &t.Claims); err != nil {
			return time.Time{}, wrap("scan provider totals", err)
		}
		batch = append(batch, t)
		if len(batch) == batchSize {
			if err := fn(batch); err != nil {
				return time.Time{}, err
			}
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, wrap("scan provider totals", err)
	}
	if len(batch) > 0 {
		if err := fn(batch); err != nil {
			return time.Time{}, err
		}
	}
	return startedAt, nil
}

// boardSizesSQL counts the providers of each board the live ranking keeps,
// off board_totals's primary key.
var boardSizesSQL = `SELECT board, count(*) FROM board_totals WHERE ` + keptBoards(1) + ` GROUP BY board`

// BoardSizes counts the providers of the all-time board (key "") and of
// each board the live ranking keeps (from oldest).
func (s *Store) BoardSizes(ctx context.Context, oldest map[claim.Window]string) (map[string]int64, error) {
	n, err := s.CountProviders(ctx)
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{"": n}
	rows, err := s.pool.Query(ctx, boardSizesSQL, keptArgs(oldest)...)
	if err != nil {
		return nil, wrap("count board providers", err)
	}
	var board string
	_, err = pgx.ForEachRow(rows, []any{&board, &n}, func() error {
		sizes[board] = n
		return nil
	})
	return sizes, wrap("count board providers", err)
}

// AuditDifference is a provider whose stored total, or claim count, is not
// what its claim lines give. A nil side means the provider is missing there.
type AuditDifference struct {
	Board       string // claim.Board.Key; "" for the all-time board (provider_totals)
	ProviderNPI string
	Totals      *claim.Cents // provider_totals
	Lines       *claim.Cents // SUM of claim_lines
	// Claims and LinesClaims are the counts of stored claims with a line of
	// the provider: provider_totals's, and the lines'.
	Claims, LinesClaims *int64
}

const auditSQL = `
SELECT provider_npi, t.total_net_fee_cents, l.total, t.claims, l.claims
FROM provider_totals t
FULL JOIN (SELECT l.provider_npi,
                  sum(CASE WHEN c.status = 'reversed' THEN 0 ELSE l.net_fee_cents END)::bigint AS total,
                  count(DISTINCT l.claim_id) FILTER (WHERE c.status <> 'reversed') AS claims
           FROM claim_lines l JOIN claims c ON c.id = l.claim_id
           GROUP BY l.provider_npi) l USING (provider_npi)
WHERE t.total_net_fee_cents IS DISTINCT FROM l.total OR t.claims IS DISTINCT FROM l.claims
ORDER BY provider_npi`

// auditBoardsSQL is auditSQL for board_totals, the boards computed from the
// lines by line_boards (migration 00011), as Go's claim.BoardsOf does.
const auditBoardsSQL = `
SELECT board, provider_npi, t.total_net_fee_cents, l.total, t.claims, l.claims
FROM board_totals t
FULL JOIN (SELECT b.board, l.provider_npi,
                  sum(CASE WHEN c.status = 'reversed' THEN 0 ELSE l.net_fee_cents END)::bigint AS total,
                  count(DISTINCT l.claim_id) FILTER (WHERE c.status <> 'reversed') AS claims
           FROM claim_lines l JOIN claims c ON c.id = l.claim_id
           CROSS JOIN LATERAL unnest(line_boards(l.service_date, l.plan_group)) AS b (board)
           GROUP BY b.board, l.provider_npi) l USING (board, provider_npi)
WHERE t.total_net_fee_cents IS DISTINCT FROM l.total OR t.claims IS DISTINCT FROM l.claims
ORDER BY board, provider_npi`

const auditCountSQL = `SELECT (SELECT count(*) FROM provider_totals) + (SELECT count(*) FROM board_totals)`

// Audit compares the totals of every board (provider_totals, board_totals)
// with the sums of the claim lines, in one snapshot, and returns every
// board and provider where they differ and how many totals were checked.
// It reads every line: an operator's tool, not a hot path.
func (s *Store) Audit(ctx context.Context) (diffs []AuditDifference, checked int64, err error) {
	err = s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return wrap("audit", err)
		}
		if err := tx.QueryRow(ctx, auditCountSQL).Scan(&checked); err != nil {
			return wrap("audit", err)
		}
		rows, err := tx.Query(ctx, auditSQL)
		if err != nil {
			return wrap("audit", err)
		}
		diffs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditDifference, error) {
			var d AuditDifference
			err := row.Scan(&d.ProviderNPI, &d.Totals, &d.Lines, &d.Claims, &d.LinesClaims)
			return d, err
		})
		if err != nil {
			return wrap("audit", err)
		}
		rows, err = tx.Query(ctx, auditBoardsSQL)
		if err != nil {
			return wrap("audit", err)
		}
		boards, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditDifference, error) {
			var d AuditDifference
			err := row.Scan(&d.Board, &d.ProviderNPI, &d.Totals, &d.Lines, &d.Claims, &d.LinesClaims)
			return d, err
		})
		diffs = append(diffs, boards...)
		return wrap("audit", err)
	})
	return diffs, checked, err
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

// RankingEpoch names this database's ranking, as "<epoch>/<timeline>": a
// Redis ranking built from another database (one since recreated) carries
// another epoch, and one built before a failover another timeline. A standby
// promoted after asynchronous replication can lack the last commits, so
// Redis may hold totals, and versions, ahead of it: the new timeline makes
// reconciliation rebuild the ranking from the new primary rather than trust
// it. (A failover without lost commits rebuilds too; it costs a rebuild.)
// Where the server does not let the role read its control data, the epoch
// alone names the ranking.
func (s *Store) RankingEpoch(ctx context.Context) (string, error) {
	var epoch string
	// The current WAL file's name begins with the timeline, in hex; the
	// control data's timeline would wait for the first checkpoint after a
	// promotion, which can be minutes.
	err := s.pool.QueryRow(ctx, `
SELECT epoch::text || '/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) FROM ranking_epoch`).Scan(&epoch)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		err = s.pool.QueryRow(ctx, "SELECT epoch::text FROM ranking_epoch").Scan(&epoch)
	}
	return epoch, wrap("read ranking epoch", err)
}
