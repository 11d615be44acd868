package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/queue"
	"github.com/claim-process/claim-process/internal/testenv"
)

// startWorker stores what the stack queued until the test ends.
func (s stack) startWorker(t *testing.T) {
	t.Helper()
	w := queue.NewWorker(queue.WorkerConfig{Config: s.queue}, s.claims, s.status,
		queue.NewMetrics(prometheus.NewRegistry()), testenv.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// queued counts the messages in the stack's queue.
func (s stack) queued(t *testing.T) int {
	t.Helper()
	conn, err := amqp.Dial(s.queue.URL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclarePassive(s.queue.Queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

func mustAsyncStack(t *testing.T) stack {
	t.Helper()
	s := mustStackWith(t, stackOptions{rabbitURL: testenv.SharedRabbitMQURL()})
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/readyz", "", nil).json(t)["rabbitmq"] == "ok"
	}, 10*time.Second, 10*time.Millisecond)
	return s
}

// In async mode the sample is answered 202 with its id and exact net fee
// once the broker has it; GET says queued until a worker stores it, then
// returns the stored claim.
func TestAsyncPostQueuedThenStored(t *testing.T) {
	t.Parallel()
	s := mustAsyncStack(t)
	res := mustDo(t, http.MethodPost, s.url+"/claims", "text/csv", bytes.NewReader(mustSample(t)))
	require.Equal(t, http.StatusAccepted, res.status, string(res.body))
	require.Contains(t, string(res.body), `"net_fee":2320.00,`)
	body := res.json(t)
	id, _ := body["id"].(string)
	require.Equal(t, "queued", body["status"])
	require.Equal(t, "/claims/"+id, res.header.Get("Location"))

	got := mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, "queued", got.json(t)["status"])
	require.Contains(t, string(got.body), `"net_fee":2320.00,`)
	require.NotContains(t, string(got.body), "3730189502", "a queued claim's status shows no subscriber")
	require.Equal(t, http.StatusNotFound,
		mustDo(t, http.MethodGet, s.url+"/claims/01a22487-af71-7a68-b316-1e8068d443bb", "", nil).status,
		"an id never accepted")

	s.startWorker(t)
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil).json(t)["status"] == "stored"
	}, 10*time.Second, 20*time.Millisecond)
	got = mustDo(t, http.MethodGet, s.url+"/claims/"+id, "", nil)
	require.Contains(t, string(got.body), `"net_fee":2320.00,`)
	require.Len(t, got.json(t)["lines"], 4)
	top := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
	require.Contains(t, string(top.body), `{"provider_npi":"1497775538","total_net_fee":955.00}`)
}

// A bad claim is refused at once, as in sync mode, and nothing is published.
func TestAsyncInvalidClaimRefusedAtOnce(t *testing.T) {
	t.Parallel()
	s := mustAsyncStack(t)
	sample := strings.Replace(string(mustSample(t)), "D4346", "X4346", 1)
	res := mustPost(t, s.url+"/claims", "text/csv", sample)
	require.Equal(t, http.StatusUnprocessableEntity, res.status, string(res.body))
	require.Contains(t, string(res.body), `"line":2`)
	require.Contains(t, string(res.body), `"field":"submitted_procedure"`)
	require.Zero(t, s.queued(t))
}

// A claim_id sent again is accepted again (the API cannot know); the worker
// finds it stored, and GET of the second id returns the first claim.
func TestAsyncResentClaimIDResolvesToTheStoredClaim(t *testing.T) {
	t.Parallel()
	s := mustAsyncStack(t)
	s.startWorker(t)
	claim := `{"claim_id": "resent-1", "lines": [` + oldServicePayload + "]}"
	first := mustPost(t, s.url+"/claims", "application/json", claim)
	require.Equal(t, http.StatusAccepted, first.status, string(first.body))
	firstID := first.json(t)["id"].(string)
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/claims/"+firstID, "", nil).json(t)["status"] == "stored"
	}, 10*time.Second, 20*time.Millisecond)

	again := mustPost(t, s.url+"/claims", "application/json", claim)
	require.Equal(t, http.StatusAccepted, again.status)
	againID := again.json(t)["id"].(string)
	require.NotEqual(t, firstID, againID)
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/claims/"+againID, "", nil).json(t)["id"] == firstID
	}, 10*time.Second, 20*time.Millisecond, "the resent claim resolves to the stored one")
	var n int
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM claims").Scan(&n))
	require.Equal(t, 1, n)
}

// With the broker unreachable a claim is refused with 503 and Retry-After at
// once, and /readyz says the broker is degraded.
func TestAsyncBrokerDownIs503(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{rabbitURL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", testenv.FreePort(t))})
	start := time.Now()
	res := mustDo(t, http.MethodPost, s.url+"/claims", "text/csv", bytes.NewReader(mustSample(t)))
	require.Equal(t, http.StatusServiceUnavailable, res.status, string(res.body))
	require.Equal(t, "application/problem+json", res.header.Get("Content-Type"))
	require.NotEmpty(t, res.header.Get("Retry-After"))
	require.Less(t, time.Since(start), time.Second)
	ready := mustDo(t, http.MethodGet, s.url+"/readyz", "", nil)
	require.Equal(t, http.StatusOK, ready.status, "lookups still work")
	require.Equal(t, "degraded", ready.json(t)["rabbitmq"])
}
