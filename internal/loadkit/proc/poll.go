package proc

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stopError makes Poll give up at once instead of polling on.
type stopError struct{ error }

// Stop wraps err so that Poll returns it at once: waiting longer is pointless.
func Stop(err error) error { return stopError{err} }

// Poll calls check every interval until it returns nil. It returns the error
// given to Stop at once, the last error after timeout, or ctx's error.
func Poll(ctx context.Context, interval, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if stop, ok := errors.AsType[stopError](err); ok {
			return stop.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}
