package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// Per-client caps answer 429 with a Retry-After: idempotency keys (sync),
// queued claims (async).
func TestClientCapsAre429(t *testing.T) {
	t.Parallel()
	t.Run("idempotency keys", func(t *testing.T) {
		t.Parallel()
		s := mustStackWith(t, stackOptions{keysPerClient: 2})
		for i := range 2 {
			res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": fmt.Sprint("key-", i)})
			require.Equal(t, http.StatusCreated, res.status)
		}
		res := mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": "key-2"})
		require.Equal(t, http.StatusTooManyRequests, res.status, string(res.body))
		require.Equal(t, "60", res.header.Get("Retry-After"))
		require.Contains(t, string(res.body), "idempotency keys")
		res = mustPostWith(t, s.url+"/claims", oldServicePayload, map[string]string{"Idempotency-Key": "key-1"})
		require.Equal(t, http.StatusCreated, res.status, "a retry with a key held is answered")
		require.Equal(t, "true", res.header.Get("Idempotency-Replayed"))
	})
	t.Run("queued claims", func(t *testing.T) {
		t.Parallel()
		s := mustStackWith(t, stackOptions{rabbitURL: testenv.SharedRabbitMQURL(), queuedPerClient: 2})
		require.Eventually(t, func() bool {
			return mustDo(t, http.MethodGet, s.url+"/readyz", "", nil).json(t)["rabbitmq"] == "ok"
		}, 10*time.Second, 10*time.Millisecond)
		for range 2 {
			require.Equal(t, http.StatusAccepted, mustPost(t, s.url+"/claims", "application/json", oldServicePayload).status)
		}
		res := mustPost(t, s.url+"/claims", "application/json", oldServicePayload)
		require.Equal(t, http.StatusTooManyRequests, res.status, string(res.body))
		require.NotEmpty(t, res.header.Get("Retry-After"))
		require.Equal(t, 2, s.queued(t), "the refused claim was not published")
		s.startWorker(t)
		require.Eventually(t, func() bool {
			return mustPost(t, s.url+"/claims", "application/json", oldServicePayload).status == http.StatusAccepted
		}, 10*time.Second, 50*time.Millisecond, "stored claims free their places")
	})
}
