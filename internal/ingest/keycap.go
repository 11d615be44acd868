package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// keyCap keeps each client within its allowance of idempotency keys, so no
// client can grow the keys table for all. It counts a client's keys in
// Postgres when it first meets the client and again at every KeyJanitor
// pass, and adds the keys it admits between counts. The cap is exact for one
// instance; with several, each adds only its own keys between counts, so a
// client can pass the cap by what the other instances admit in one interval.
type keyCap struct {
	store ClaimStore
	limit int64

	mu      sync.Mutex
	clients map[string]*keyCount // the clients that sent keys: bounded by the API keys
}

type keyCount struct {
	counted bool  // held was read from Postgres
	held    int64 // keys at the last count, plus those admitted since
}

func newKeyCap(store ClaimStore, limit int64) *keyCap {
	return &keyCap{store: store, limit: limit, clients: map[string]*keyCount{}}
}

// errTooManyKeys refuses a claim with a new key from a client at its cap.
var errTooManyKeys = &claim.RetryAfter{Err: claim.ErrTooManyKeys, After: time.Minute}

// count makes sure client's keys in Postgres have been counted once. Call it
// before the client's key is written, so the count does not include it.
func (k *keyCap) count(ctx context.Context, client string) (*keyCount, error) {
	k.mu.Lock()
	c := k.clients[client]
	if c == nil {
		c = &keyCount{}
		k.clients[client] = c
	}
	counted := c.counted
	k.mu.Unlock()
	if counted {
		return c, nil
	}
	n, err := k.store.CountKeys(ctx, client, k.limit)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if !c.counted {
		c.counted, c.held = true, c.held+n
	}
	k.mu.Unlock()
	return c, nil
}

// admit takes one key of client's allowance, or fails with
// claim.ErrTooManyKeys when none is left.
func (k *keyCap) admit(ctx context.Context, client string) error {
	c, err := k.count(ctx, client)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c.held >= k.limit {
		return errTooManyKeys
	}
	c.held++
	return nil
}

// recount reads every known client's keys from Postgres again: keys expire,
// and other instances admit keys too.
func (k *keyCap) recount(ctx context.Context) error {
	k.mu.Lock()
	clients := make([]string, 0, len(k.clients))
	for client := range k.clients {
		clients = append(clients, client)
	}
	k.mu.Unlock()
	for _, client := range clients {
		n, err := k.store.CountKeys(ctx, client, k.limit)
		if err != nil {
			return err
		}
		k.mu.Lock()
		k.clients[client].counted, k.clients[client].held = true, n
		k.mu.Unlock()
	}
	return nil
}
