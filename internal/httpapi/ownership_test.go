package httpapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// A claim and everything about it (stored, or as sent again under its
// claim_id) is read only by the client that sent it; any other client gets
// the very answer of an id never accepted.
func TestClaimReadOnlyByItsSender(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-alpha", "k-beta"}})
	alpha := map[string]string{"Authorization": "Bearer k-alpha"}
	beta := map[string]string{"Authorization": "Bearer k-beta"}
	body := `{"claim_id": "PAY-7", "lines": [` + oldServicePayload + `]}`
	posted := mustPostWith(t, s.url+"/claims", body, alpha)
	require.Equal(t, http.StatusCreated, posted.status)
	id := posted.json(t)["id"].(string)

	mine := mustDoWith(t, http.MethodGet, s.url+"/claims/"+id, alpha, nil)
	require.Equal(t, http.StatusOK, mine.status)
	require.Contains(t, string(mine.body), "3730189502")

	never := mustDoWith(t, http.MethodGet, s.url+"/claims/01a22487-af71-7a68-b316-000000000000", beta, nil)
	theirs := mustDoWith(t, http.MethodGet, s.url+"/claims/"+id, beta, nil)
	require.Equal(t, http.StatusNotFound, theirs.status)
	require.Equal(t, string(never.body), string(theirs.body), "the same answer as an id never stored")

	// The claim_id is alpha's own: beta sending the same claim stores its own.
	again := mustPostWith(t, s.url+"/claims", body, beta)
	require.Equal(t, http.StatusCreated, again.status)
	require.NotEqual(t, id, again.json(t)["id"])
}

// In async mode the queued status of a claim, and a claim sent again that
// resolves to the stored one, are its sender's alone too.
func TestQueuedClaimReadOnlyByItsSender(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-alpha", "k-beta"}, rabbitURL: testenv.SharedRabbitMQURL()})
	alpha := map[string]string{"Authorization": "Bearer k-alpha"}
	beta := map[string]string{"Authorization": "Bearer k-beta"}
	require.Eventually(t, func() bool {
		return mustDo(t, http.MethodGet, s.url+"/readyz", "", nil).json(t)["rabbitmq"] == "ok"
	}, 10*time.Second, 10*time.Millisecond)
	body := `{"claim_id": "PAY-Q", "lines": [` + oldServicePayload + `]}`
	first := mustPostWith(t, s.url+"/claims", body, alpha)
	require.Equal(t, http.StatusAccepted, first.status, string(first.body))
	firstID := first.json(t)["id"].(string)
	requireOnlyAlpha := func(id, status string) {
		t.Helper()
		require.Eventually(t, func() bool {
			return mustDoWith(t, http.MethodGet, s.url+"/claims/"+id, alpha, nil).json(t)["status"] == status
		}, 10*time.Second, 20*time.Millisecond, "%s becomes %s", id, status)
		theirs := mustDoWith(t, http.MethodGet, s.url+"/claims/"+id, beta, nil)
		require.Equal(t, http.StatusNotFound, theirs.status, "another client reads a %s claim", status)
		require.NotContains(t, string(theirs.body), "PAY-Q")
	}
	requireOnlyAlpha(firstID, "queued")

	s.startWorker(t)
	requireOnlyAlpha(firstID, "stored")
	second := mustPostWith(t, s.url+"/claims", body, alpha) // resolves to the first once a worker has it
	require.Equal(t, http.StatusAccepted, second.status)
	secondID := second.json(t)["id"].(string)
	require.Eventually(t, func() bool {
		return mustDoWith(t, http.MethodGet, s.url+"/claims/"+secondID, alpha, nil).json(t)["id"] == firstID
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, http.StatusNotFound, mustDoWith(t, http.MethodGet, s.url+"/claims/"+secondID, beta, nil).status)
}

// Without API keys, claims may be posted but not read back, unless the
// operator allows anonymous reads.
func TestAnonymousReadsRefusedByDefault(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{noAnonymousReads: true})
	posted := mustPost(t, s.url+"/claims", "application/json", oldServicePayload)
	require.Equal(t, http.StatusCreated, posted.status)
	got := mustDo(t, http.MethodGet, s.url+posted.header.Get("Location"), "", nil)
	require.Equal(t, http.StatusForbidden, got.status)
	require.Contains(t, string(got.body), "ALLOW_ANONYMOUS_READS")
	require.NotContains(t, string(got.body), "3730189502")

	open := mustStackWith(t, stackOptions{})
	posted = mustPost(t, open.url+"/claims", "application/json", oldServicePayload)
	require.Equal(t, http.StatusOK, mustDo(t, http.MethodGet, open.url+posted.header.Get("Location"), "", nil).status)
}

// Every answer about claims forbids caching it, and the access log names
// the client of every request (its key's id, never the key), so that each
// read of a claim can be audited.
func TestClaimAnswersNotCachedAndAccessLogged(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-secret-alpha"}, log: slog.New(slog.NewJSONHandler(logs, nil))})
	auth := map[string]string{"Authorization": "Bearer k-secret-alpha"}
	posted := mustPostWith(t, s.url+"/claims", oldServicePayload, auth)
	require.Equal(t, "no-store", posted.header.Get("Cache-Control"))
	got := mustDoWith(t, http.MethodGet, s.url+posted.header.Get("Location"), auth, nil)
	require.Equal(t, "no-store", got.header.Get("Cache-Control"))
	batch := mustDoWith(t, http.MethodPost, s.url+"/claims/batch", map[string]string{"Content-Type": "application/json",
		"Authorization": "Bearer k-secret-alpha"}, strings.NewReader("["+oldServicePayload+"]"))
	require.Equal(t, "no-store", batch.header.Get("Cache-Control"))
	require.Empty(t, mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil).header.Get("Cache-Control"))
	mustDo(t, http.MethodGet, s.url+posted.header.Get("Location"), "", nil) // no key: 401

	clients := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &line))
		if line["msg"] == "request" {
			client := fmt.Sprint(line["client"])
			clients[client] = append(clients[client], fmt.Sprint(line["route"], " ", line["status"]))
		}
	}
	require.Len(t, clients, 2, "%v", clients)
	require.Equal(t, []string{"/top-providers 200", "/claims/{id} 401"}, clients["addr:127.0.0.1"])
	for client, requests := range clients {
		if client != "addr:127.0.0.1" {
			require.Regexp(t, `^key:[0-9a-f]{12}$`, client)
			require.Equal(t, []string{"/claims 201", "/claims/{id} 200", "/claims/batch 200"}, requests)
		}
	}
	require.NotContains(t, logs.String(), "k-secret-alpha", "keys are never logged")
}
