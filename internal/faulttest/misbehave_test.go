package faulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
	"github.com/claim-process/claim-process/internal/testenv"
)

// Scenario 7: one client misbehaves while another sends its
// claims. The misbehaving client, with an API key of its own, holds batches
// open part-way (stalled), sends claims whose claim_id Postgres cannot
// store (NUL), requests with made-up methods and paths, and lookups far past
// its rate limit. The well-behaved client's claims must all be stored
// exactly once, every one answered before its client's own deadline (10 s),
// its lookups never limited by the other's; no batch falls back to one
// transaction per claim, and the metrics do not grow with what was sent.
func TestMisbehavingClientDoesNotHurtOthers(t *testing.T) {
	requireFaults(t)
	const goodKey, badKey = "good-client-key", "bad-client-key"
	rs := testenv.MustRedisServer(t)
	db := testenv.MustDatabase(t)
	cd := StartClaimd(t, "claimd", ClaimdConfig{DatabaseURL: db, RedisURL: rs.URL(), Env: []string{
		"API_KEYS=" + goodKey + "," + badKey,
		"TOP_PROVIDERS_RATE_LIMIT=20/s",
		// A small queue, so that stalled batches would hold all of the
		// batches' half of it if they could.
		"INGEST_QUEUE_SIZE=256",
	}})
	sys := System{DatabaseURL: db, Redis: rs.Client(), API: cd.BaseURL(), APIKey: goodKey}
	api := cd.BaseURL()

	// The well-behaved client sends claims one at a time and in batches.
	load := NewLoad(t, LoadConfig{Claims: 3000, Clients: 12, KeyShare: 0.3, APIKey: goodKey})
	batches := NewLoad(t, LoadConfig{Claims: 2000, Clients: 4, Batch: 25, APIKey: goodKey})
	rng := rand.New(rand.NewPCG(load.cfg.Seed, 2))
	gen := newGenerator(load.cfg.Seed + 2) // the bad client's claims
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg      sync.WaitGroup
		stalled []*Claim // the bad client's claims in batches it never finishes: stored or not
		nulSent atomic.Int64
		nulBad  atomic.Int64 // NUL claims not answered 422 (or a batch position not 422)
		oddSent atomic.Int64
		odd5xx  atomic.Int64
		badTop  = map[int]int{}
		topMu   sync.Mutex
	)
	badClient := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, contentType, body string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, method, api+path, strings.NewReader(body))
		if err != nil {
			return 0, nil
		}
		req.Header.Set("Authorization", "Bearer "+badKey)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		res, err := badClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}

	// Stalled batches: eight connections each send 200 claims of a batch
	// (more than the queue's share for batches, all of them together) and
	// then nothing, holding the request open until the scenario ends.
	for n := range 8 {
		var claims []*Claim
		for i := range 200 {
			claims = append(claims, newClaim(gen, fmt.Sprintf("ft-%s-stall-%d-%03d", load.tag, n, i)))
		}
		stalled = append(stalled, claims...)
		wg.Go(func() {
			conn, err := net.Dial("tcp", strings.TrimPrefix(api, "http://"))
			if !assert.NoError(t, err) {
				return
			}
			defer conn.Close()
			var body bytes.Buffer
			body.WriteString("[")
			for i, c := range claims {
				if i > 0 {
					body.WriteString(",")
				}
				body.Write(c.Body)
			}
			body.WriteString(",") // and the rest never comes
			fmt.Fprintf(conn, "POST /claims/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
				badKey, body.Len()+1<<20)
			_, err = conn.Write(body.Bytes())
			assert.NoError(t, err)
			<-ctx.Done()
		})
	}
	// NUL claim_ids, one at a time and in batches next to nothing else.
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			c := newClaim(gen, fmt.Sprintf("nul-%d", i))
			body := strings.Replace(string(c.Body), `"claim_id":"nul-`, `"claim_id":"nul\u0000-`, 1) // the JSON escape
			nulSent.Add(1)
			if i%10 == 9 {
				status, answer := do(http.MethodPost, "/claims/batch", "application/json", "["+body+","+body+"]")
				var got struct{ Refused, Received int }
				if status != 0 && (status != http.StatusOK || json.Unmarshal(answer, &got) != nil || got.Refused != 2 || got.Received != 2) {
					nulBad.Add(1)
				}
				continue
			}
			if status, _ := do(http.MethodPost, "/claims", "application/json", body); status != 0 && status != http.StatusUnprocessableEntity {
				nulBad.Add(1)
			}
		}
	})
	// Made-up methods on made-up paths.
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			method := fmt.Sprintf("X%dY%d", rng.IntN(1e6), i)
			path := fmt.Sprintf("/%d/%x", i, rng.Uint64())
			if i%2 == 0 {
				path = "/claims/" + path[1:]
			}
			oddSent.Add(1)
			if status, _ := do(method, path, "", ""); status >= 500 {
				odd5xx.Add(1)
			}
		}
	})
	// Lookups far past the limit.
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				status, _ := do(http.MethodGet, "/top-providers", "", "")
				topMu.Lock()
				badTop[status]++
				topMu.Unlock()
			}
		})
	}
	// The well-behaved client's own lookups, five a second with its key.
	goodTop := map[int]int{}
	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+"/top-providers", nil)
			req.Header.Set("Authorization", "Bearer "+goodKey)
			if res, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
				topMu.Lock()
				goodTop[res.StatusCode]++
				topMu.Unlock()
			}
			sleep(ctx, 200*time.Millisecond)
		}
	})

	time.Sleep(time.Second) // the misbehaviour is under way before the load starts
	load.Start(api)
	batches.Start(api)
	load.Wait()
	batches.Wait()
	requireEveryClaimAnswered(t, load)
	requireEveryClaimAnswered(t, batches)
	stop()
	wg.Wait()

	for _, s := range []*Stats{load.Sender.Stats, batches.Sender.Stats} {
		assert.Zero(t, s.NoAnswer.Load(), "well-behaved requests not answered before their deadline")
		assert.Zero(t, s.Other5xx.Load(), "5xx answers to the well-behaved client")
	}
	t.Logf("misbehaving client: %d stalled batches of 200 claims, %d NUL claim_ids, %d made-up requests, lookups %v",
		8, nulSent.Load(), oddSent.Load(), badTop)
	t.Logf("well-behaved client: %d single claims in %s, %d in batches of 25 in %s, lookups %v", len(load.Claims),
		load.Elapsed.Round(time.Millisecond), len(batches.Claims), batches.Elapsed.Round(time.Millisecond), goodTop)
	assert.Zero(t, nulBad.Load(), "NUL claim_ids not answered 422")
	assert.Zero(t, odd5xx.Load(), "5xx answers to made-up methods")
	assert.Greater(t, badTop[http.StatusTooManyRequests], 0, "the misbehaving client was limited")
	assert.Equal(t, 0, goodTop[http.StatusTooManyRequests], "the well-behaved client was limited by the other's load")
	assert.Greater(t, goodTop[http.StatusOK], 0)
	fallbacks, _ := cd.Metric("claimd_ingest_batch_fallbacks_total")
	assert.Zero(t, fallbacks, "a batch fell back to one transaction per claim")
	metrics, err := loadkit.Scrape(context.Background(), api)
	require.NoError(t, err)
	series := metrics.Samples("claimd_http_requests_total")
	assert.Less(t, len(series), 60, "HTTP request series: %d", len(series))

	// The stalled batches' claims that were read are stored, each once:
	// Verify counts them with the load's (they never got an answer).
	load.Claims = append(append(load.Claims, batches.Claims...), stalled...)
	report := Verify(t, sys, load)
	finish(t, cd, "7 (a misbehaving client beside a well-behaved one)", load, report)
}
