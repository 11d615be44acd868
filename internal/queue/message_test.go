package queue_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
	"github.com/claim-process/claim-process/internal/queue"
)

// A queued correction keeps the claim it replaces, as its sender named it:
// the worker stores it as a correction.
func TestQueuedCorrectionKeepsWhatItReplaces(t *testing.T) {
	c := claim.Claim{ID: "01a22397-b5be-7f3d-9c23-54112a0662b7", ExternalID: "PAY-2", Replaces: "PAY-1",
		ReceivedAt: time.Now(), Lines: []claim.Line{{ServiceDate: time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC),
			SubmittedProcedure: "D0180", PlanGroup: "G", Subscriber: "S", ProviderNPI: "1497775530", ProviderFees: 100}}}
	d, err := queue.MessageOf(c, "")
	require.NoError(t, err)
	sub, err := queue.Decode(d)
	require.NoError(t, err)
	require.Equal(t, "PAY-1", sub.Input.ReplacesText())
	require.Equal(t, "PAY-2", sub.Input.ExternalIDText())
}
