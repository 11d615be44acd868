package store

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/claim-process/claim-process/internal/claim"
)

// wrap names the operation that failed and, when the cause is that Postgres
// cannot be reached or is shutting down, marks the error claim.ErrUnavailable
// so callers can answer "try again" instead of "failed".
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if isUnavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, claim.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnavailable(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
		pgErr      *pgconn.PgError
	)
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr), pgconn.Timeout(err):
		return true
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		// ErrConnClosed: a pooled connection whose server went away (a
		// crashed primary) before it was used again.
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exceptions; 57P01-03: the server is shutting
		// down or starting; 53300: too many connections; 25006: a write
		// reached a server that is (now) a read-only standby.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300" || pgErr.Code == "25006"
	case strings.Contains(err.Error(), "closed pool"):
		return true
	}
	return false
}
