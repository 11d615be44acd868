package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// maxListedProtocol bounds the protocol problems kept; all are counted.
const maxListedProtocol = 20

// batchStats is what the items of batch answers said.
type batchStats struct {
	Items      map[string]int64 // "201", "200", "422", "503", "not read" -> count
	Incomplete int64            // answers with "complete": false
	// Protocol lists answers that broke the endpoint's contract (an index
	// out of range or listed twice, a 2xx item with another claim_id or
	// net_fee than was sent, an unreadable answer). Verification fails on any.
	Protocol      []string
	ProtocolCount int64
}

func (s *batchStats) count(key string, n int64) {
	if s.Items == nil {
		s.Items = map[string]int64{}
	}
	s.Items[key] += n
}

func (s *batchStats) problem(format string, args ...any) {
	s.ProtocolCount++
	if len(s.Protocol) < maxListedProtocol {
		s.Protocol = append(s.Protocol, fmt.Sprintf(format, args...))
	}
}

func (s *batchStats) add(o batchStats) {
	for k, n := range o.Items {
		s.count(k, n)
	}
	s.Incomplete += o.Incomplete
	s.ProtocolCount += o.ProtocolCount
	for _, p := range o.Protocol {
		if len(s.Protocol) < maxListedProtocol {
			s.Protocol = append(s.Protocol, p)
		}
	}
}

// batchAnswer is claimd's 200 answer to POST /claims/batch.
type batchAnswer struct {
	Received int         `json:"received"`
	Created  int         `json:"created"`
	Existing int         `json:"existing"`
	Refused  int         `json:"refused"`
	Complete *bool       `json:"complete"`
	Results  []batchItem `json:"results"`
}

type batchItem struct {
	Index   *int            `json:"index"`
	Status  int             `json:"status"`
	ID      string          `json:"id"`
	ClaimID string          `json:"claim_id"`
	NetFee  json.Number     `json:"net_fee"`
	Problem json.RawMessage `json:"problem"`
}

// batchBody is the JSON array of the claims, each as POST /claims takes it.
func batchBody(scs []*sentClaim) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, sc := range scs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(sc.Claim.JSON())
	}
	b.WriteByte(']')
	return b.Bytes()
}

// postBatch sends the claims as one batch and records in each sentClaim what
// its item's answer means for it. A claim whose outcome the answer does not
// resolve (its item is a 503, is missing, or came after the point where the
// server stopped reading; or the whole request failed with a 5xx, a 429 or a
// transport error) stays loadkit.Unknown, to be resent with the same claim_id.
func (l *loader) postBatch(ctx context.Context, scs []*sentClaim) (int, batchStats, error) {
	var st batchStats
	status, body, err := l.do(ctx, http.MethodPost, "/claims/batch", batchBody(scs))
	for _, sc := range scs {
		sc.Status, sc.Outcome = status, loadkit.Unknown
	}
	switch {
	case err != nil:
		st.count("request failed", int64(len(scs)))
		return 0, st, err
	case status == http.StatusOK:
		applyBatchAnswer(scs, body, &st)
	case status == http.StatusTooManyRequests || status >= 500:
		st.count("request "+strconv.Itoa(status), int64(len(scs)))
	default:
		// 400, 413, 415: the whole request was refused and nothing stored.
		// claimbench sends well-formed batches within the limits, so this is
		// also a protocol problem worth failing the run for.
		for _, sc := range scs {
			sc.Outcome = loadkit.Refused
		}
		st.count("request "+strconv.Itoa(status), int64(len(scs)))
		st.problem("a batch of %d claims was refused whole: %d %.200s", len(scs), status, body)
	}
	return status, st, nil
}

// applyBatchAnswer reads a 200 answer into the claims' outcomes.
func applyBatchAnswer(scs []*sentClaim, body []byte, st *batchStats) {
	var a batchAnswer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		st.count("answer unreadable", int64(len(scs)))
		st.problem("batch answer is not the documented JSON: %v: %.200s", err, body)
		return
	}
	if a.Complete == nil {
		st.problem("batch answer has no \"complete\"")
	}
	complete := a.Complete == nil || *a.Complete
	if !complete {
		st.Incomplete++
	}
	seen := make([]bool, len(scs))
	var created, existing, refused int
	for _, it := range a.Results {
		if it.Index == nil || *it.Index < 0 || *it.Index >= len(scs) || seen[*it.Index] {
			st.problem("batch answer lists an item with index %v, out of range or repeated", it.Index)
			continue
		}
		i := *it.Index
		seen[i] = true
		sc := scs[i]
		sc.Status = it.Status
		st.count(strconv.Itoa(it.Status), 1)
		switch {
		case it.Status == http.StatusCreated || it.Status == http.StatusOK:
			sc.Outcome = loadkit.Acked
			sc.ID = it.ID
			if it.Status == http.StatusCreated {
				created++
			} else {
				existing++
			}
			switch {
			case it.ID == "":
				sc.Problem = "batch item has no id"
			case it.ClaimID != sc.Claim.ExternalID:
				sc.Problem = fmt.Sprintf("batch item's claim_id is %q, sent %q", it.ClaimID, sc.Claim.ExternalID)
			default:
				if got, err := loadkit.ParseCents(it.NetFee.String()); err != nil || got != sc.Claim.NetFee() {
					sc.Problem = fmt.Sprintf("batch item's net_fee is %s, expected %s", it.NetFee, loadkit.FormatCents(sc.Claim.NetFee()))
				}
			}
		case it.Status == http.StatusBadRequest || it.Status == http.StatusUnprocessableEntity:
			sc.Outcome = loadkit.Refused
			refused++
		default: // 503: not stored now, resend; anything else: unknown too
			sc.Outcome = loadkit.Unknown
		}
	}
	missing := 0
	for i := range scs {
		if !seen[i] {
			missing++
		}
	}
	if missing > 0 {
		st.count("not read", int64(missing))
		if complete {
			st.problem("batch answer says complete but lists %d of %d items", len(scs)-missing, len(scs))
		}
	}
	if a.Created != created || a.Existing != existing || a.Refused != refused {
		st.problem("batch answer's counts (created %d, existing %d, refused %d) disagree with its results (%d, %d, %d)",
			a.Created, a.Existing, a.Refused, created, existing, refused)
	}
}

// resolveBatch resends, in batches, every claim whose outcome is unknown,
// with the same claim_ids, until each is acknowledged or refused (six
// rounds at most). It returns how many claims needed it and the protocol
// problems the resends met.
func (l *loader) resolveBatch(ctx context.Context, claims []*sentClaim) (int, []string) {
	var todo []*sentClaim
	for _, sc := range claims {
		if sc.Outcome == loadkit.Unknown {
			todo = append(todo, sc)
		}
	}
	n := len(todo)
	var (
		mu       sync.Mutex
		protocol []string
	)
	for attempt := 0; attempt < 6 && len(todo) > 0; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
		}
		sem := make(chan struct{}, 4)
		var wg sync.WaitGroup
		for chunk := range slices.Chunk(todo, l.cfg.BatchSize) {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, st, _ := l.postBatch(ctx, chunk)
				mu.Lock()
				protocol = append(protocol, st.Protocol...)
				mu.Unlock()
			})
		}
		wg.Wait()
		todo = slices.DeleteFunc(todo, func(sc *sentClaim) bool { return sc.Outcome != loadkit.Unknown })
	}
	return n, protocol
}

// probeBatch asks with an empty batch, which stores nothing, whether the
// server has the endpoint, and says plainly when it does not.
func probeBatch(ctx context.Context, client *http.Client, cfg config) error {
	l := &loader{cfg: cfg, client: client}
	status, _, err := l.do(ctx, http.MethodPost, "/claims/batch", []byte("[]"))
	if err != nil {
		return fmt.Errorf("batch mode: POST %s/claims/batch: %w", cfg.URL, err)
	}
	if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w (it answered %d %s); use -mode single", errNoBatchEndpoint, status, http.StatusText(status))
	}
	return nil
}

// errNoBatchEndpoint: the server does not serve POST /claims/batch.
var errNoBatchEndpoint = fmt.Errorf("batch mode: POST /claims/batch is not available on this server")

// itemsLine formats batch item counts for the report: "201: 9000  503: 12".
func itemsLine(items map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(items)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, items[k]))
	}
	return strings.Join(parts, "  ")
}
