package httpapi

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/claim-process/claim-process/internal/claim"
)

const (
	defaultTopLimit = 10
	maxTopLimit     = 100
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
		limit := defaultTopLimit
		if s := queryParam(r.URL, "limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxTopLimit {
				writeProblem(w, problemFor(http.StatusBadRequest, "limit must be a whole number from 1 to 100"))
				return
			}
			limit = n
		}
		top, source, err := d.Top.TopProviders(r.Context(), limit)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(answers.encode(top, source))
	}
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
