package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// ClaimReader reads a stored claim of one client; claim.ErrNotFound when
// there is none with the id, or it is another client's. The Postgres store
// is one.
type ClaimReader interface {
	Claim(ctx context.Context, client, id string) (claim.Claim, error)
}

// StatusReader tells what became of an accepted claim: stored (Postgres
// answers), or accepted for the queue and not stored under its own id (the
// queued status answers).
type StatusReader struct {
	claims        ClaimReader
	queued        *Status
	queueOptional bool
}

// optionalLookupTimeout bounds a look at the queued statuses that may fail.
const optionalLookupTimeout = 100 * time.Millisecond

// NewStatusReader reads claims from claims and, when queued is not nil, the
// statuses of queued claims from it. In sync mode the queue is optional: no
// claim is queued now (only claims accepted before a switch from async mode
// can be), so when the statuses cannot be read Postgres alone answers.
func NewStatusReader(claims ClaimReader, queued *Status, queueOptional bool) *StatusReader {
	return &StatusReader{claims: claims, queued: queued, queueOptional: queueOptional}
}

// ClaimStatus returns the status of the claim id if client sent it;
// claim.ErrNotFound when it was never accepted or another client sent it,
// an error wrapping claim.ErrUnavailable when that cannot be told now.
func (r *StatusReader) ClaimStatus(ctx context.Context, client, id string) (claim.Status, error) {
	c, err := r.claims.Claim(ctx, client, id)
	if err == nil {
		return claim.Status{State: claim.StatusStored, Claim: c}, nil
	}
	if !errors.Is(err, claim.ErrNotFound) || r.queued == nil {
		return claim.Status{}, err
	}
	// Perhaps accepted for the queue and not stored (yet).
	lctx := ctx
	if r.queueOptional { // Postgres's answer stands unless Redis answers at once
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, optionalLookupTimeout)
		defer cancel()
	}
	st, found, err := r.queued.Lookup(lctx, client, id)
	switch {
	case err != nil && r.queueOptional:
		return claim.Status{}, claim.ErrNotFound
	case err != nil:
		return claim.Status{}, fmt.Errorf("%w: looking up queued claims: %w", claim.ErrUnavailable, err)
	case !found:
		return claim.Status{}, claim.ErrNotFound
	case st.Status == claim.StatusStored: // under an earlier claim with its claim_id or key
		c, err := r.claims.Claim(ctx, client, st.StoredAs)
		if err != nil {
			return claim.Status{}, err
		}
		return claim.Status{State: claim.StatusStored, Claim: c}, nil
	}
	return claim.Status{State: st.Status, ID: id, ClaimID: st.ClaimID, NetFee: st.NetFee,
		ReceivedAt: st.ReceivedAt, Reason: st.Reason}, nil
}
