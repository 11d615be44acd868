package events

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A row of the outbox leaves it only when every one of its events was
// confirmed; the row of the first unconfirmed event is published again whole.
func TestWholeKeepsARowWithAnUnconfirmedEvent(t *testing.T) {
	events := []Row{{Seq: 1}, {Seq: 1}, {Seq: 4}, {Seq: 4}, {Seq: 4}, {Seq: 9}}
	for n, want := range map[int][]int64{
		0: nil, 1: nil, 2: {1}, 3: {1}, 4: {1}, 5: {1, 4}, 6: {1, 4, 9},
	} {
		require.Equal(t, want, whole(events, n), "first %d confirmed", n)
	}
}
