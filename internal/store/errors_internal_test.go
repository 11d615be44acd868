package store

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// What a failover does to a pooled connection is "try again", never a
// server fault: the client's retry reaches the new primary.
func TestWrapMarksFailoverErrorsUnavailable(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("begin: %w", pgconn.ErrConnClosed),
		io.ErrUnexpectedEOF,
		&pgconn.PgError{Code: "25006"}, // read_only_sql_transaction: a standby now
		&pgconn.PgError{Code: "57P01"}, // admin_shutdown
		&pgconn.PgError{Code: "08006"}, // connection_failure
	} {
		require.ErrorIs(t, wrap("op", err), claim.ErrUnavailable, "%v", err)
	}
	for _, err := range []error{
		errors.New("some bug"),
		&pgconn.PgError{Code: "23505"}, // unique_violation
	} {
		require.NotErrorIs(t, wrap("op", err), claim.ErrUnavailable, "%v", err)
	}
}
