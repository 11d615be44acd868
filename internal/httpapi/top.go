package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

const (
	defaultTopLimit = 10
	maxTopLimit     = 100
	// maxTopOffset bounds how deep a page starts: with shards each reads
	// offset+limit members, and Postgres walks as many index entries.
	maxTopOffset = 10_000
)

type topProvidersResponse struct {
	TopProviders []providerTotalResponse `json:"top_providers"`
	Source       string                  `json:"source"`
}

type providerTotalResponse struct {
	ProviderNPI string `json:"provider_npi"`
	TotalNetFee money  `json:"total_net_fee"`
}

func toTopProvidersResponse(totals []claim.ProviderTotal, source string) topProvidersResponse {
	out := topProvidersResponse{TopProviders: make([]providerTotalResponse, len(totals)), Source: source}
	for i, t := range totals {
		out.TopProviders[i] = providerTotalResponse{ProviderNPI: t.ProviderNPI, TotalNetFee: money(t.NetFee)}
	}
	return out
}

// encodedTop keeps the last answer encoded, and answers with it again while
// the ranking read gives the same providers and totals from the same source:
// between two changes of the top, every lookup writes the same bytes. The
// comparison is of at most 100 entries; the encoding it saves costs more.
type encodedTop struct {
	mu     sync.Mutex
	top    []claim.ProviderTotal // read-only: ranking reads are never changed once returned
	source claim.Source
	body   []byte
}

func (c *encodedTop) encode(top []claim.ProviderTotal, source claim.Source) []byte {
	c.mu.Lock()
	if c.body != nil && c.source == source && sameTop(c.top, top) {
		b := c.body
		c.mu.Unlock()
		return b
	}
	c.mu.Unlock()
	var buf bytes.Buffer
	encodeJSON(&buf, toTopProvidersResponse(top, string(source)))
	c.mu.Lock()
	c.top, c.source, c.body = top, source, buf.Bytes()
	c.mu.Unlock()
	return buf.Bytes()
}

// sameTop says whether two ranking reads list the same providers with the
// same totals, in the same order (the version is not part of an answer).
func sameTop(a, b []claim.ProviderTotal) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) > 0 && &a[0] == &b[0] {
		return true // one shared read
	}
	for i := range a {
		if a[i].ProviderNPI != b[i].ProviderNPI || a[i].NetFee != b[i].NetFee {
			return false
		}
	}
	return true
}

func handleTopProviders(d Deps) http.HandlerFunc {
	var answers encodedTop
	return func(w http.ResponseWriter, r *http.Request) {
		limit, ok := wholeParam(w, r, "limit", 1, maxTopLimit, defaultTopLimit)
		if !ok {
			return
		}
		offset, ok := wholeParam(w, r, "offset", 0, maxTopOffset, 0)
		if !ok {
			return
		}
		board, ok := boardParams(w, r)
		if !ok {
			return
		}
		top, source, err := d.Top.BoardTop(r.Context(), board, offset, limit)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(answers.encode(top, source))
	}
}

// boardParams reads the board a lookup asks for: window (all, day, week,
// month or year; default all), period (of the window, in its form; the
// current one, UTC, when omitted) and plan_group (for the all and month
// windows). A wrong one is answered with the 400 naming it, and ok is false.
func boardParams(w http.ResponseWriter, r *http.Request) (b claim.Board, ok bool) {
	bad := func(param, detail string) (claim.Board, bool) {
		writeProblem(w, paramProblem(param, detail))
		return claim.Board{}, false
	}
	window, period, plan := queryParam(r.URL, "window"), queryParam(r.URL, "period"), queryParam(r.URL, "plan_group")
	b.Window = claim.WindowAll
	if window != "" {
		b.Window = claim.Window(window)
		if !slices.Contains(claim.Windows, b.Window) {
			return bad("window", "must be all, day, week, month or year")
		}
	}
	if b.Window == claim.WindowAll && period != "" {
		return bad("period", "the all window has no periods")
	}
	p, err := claim.ParsePeriod(b.Window, period, time.Now())
	if err != nil {
		return bad("period", err.Error())
	}
	b.Period = p
	if plan != "" {
		if !slices.Contains(claim.SegmentWindows, b.Window) {
			return bad("plan_group", "plans have all and month boards only")
		}
		if utf8.RuneCountInString(plan) > claim.MaxPlanGroupLength || !claim.StorableText(plan) {
			return bad("plan_group", "must be a plan/group: at most 64 characters of UTF-8 text without NUL")
		}
		b.PlanGroup = plan
	}
	return b, true
}

// wholeParam reads the query parameter name, a whole number from lo to hi,
// def when absent; otherwise it answers the 400 naming it, and ok is false.
func wholeParam(w http.ResponseWriter, r *http.Request, name string, lo, hi, def int) (n int, ok bool) {
	s := queryParam(r.URL, name)
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		writeProblem(w, paramProblem(name, fmt.Sprintf("must be a whole number from %d to %d", lo, hi)))
		return 0, false
	}
	return n, true
}

// queryParam is u.Query().Get(key) without building the whole map, for a
// query with nothing to unescape (the usual "limit=10"); any other query
// is parsed by net/url as before.
func queryParam(u *url.URL, key string) string {
	q := u.RawQuery
	if strings.ContainsAny(q, "%+;") {
		return u.Query().Get(key)
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(pair, "="); k == key {
			return v
		}
	}
	return ""
}

// providerResponse is GET /providers/{npi}'s answer.
type providerResponse struct {
	ProviderNPI string `json:"provider_npi"`
	TotalNetFee money  `json:"total_net_fee"`
	Rank        int64  `json:"rank"`
	Claims      int64  `json:"claims"`
	Source      string `json:"source"`
}

// handleProvider answers a provider's total, its rank in the order
// /top-providers lists, and its count of stored claims; 404 when it has no
// claims.
func handleProvider(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		npi := chi.URLParam(r, "npi")
		if !claim.ValidNPIFormat(npi) {
			writeProblem(w, paramProblem("npi", "must be exactly 10 digits"))
			return
		}
		board, ok := boardParams(w, r)
		if !ok {
			return
		}
		st, source, err := d.Top.BoardRank(r.Context(), board, npi)
		if errors.Is(err, claim.ErrNotFound) {
			writeProblem(w, problemFor(http.StatusNotFound, "no claims of provider "+npi+" in this board"))
			return
		}
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(appendProvider(make([]byte, 0, 128), st, source))
	}
}

// appendProvider appends GET /providers/{npi}'s answer, byte for byte as
// encodeJSON writes a providerResponse, without reflection: the lookup is
// the cheapest of the API, and the encoding a good part of its cost.
func appendProvider(b []byte, st claim.Standing, source claim.Source) []byte {
	b = appendString(append(b, `{"provider_npi":`...), st.ProviderNPI)
	b = append(append(b, `,"total_net_fee":`...), st.NetFee.String()...)
	b = strconv.AppendInt(append(b, `,"rank":`...), st.Rank, 10)
	b = strconv.AppendInt(append(b, `,"claims":`...), st.Claims, 10)
	b = appendString(append(b, `,"source":`...), string(source))
	return append(b, "}\n"...)
}
