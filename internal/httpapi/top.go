package httpapi

import (
	"bytes"
	"net/http"
	"strconv"
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

// encodedTop keeps the last answer encoded. Lookups that shared a ranking
// read get the very same slice (see rank's coalesced reads) and share its
// encoding: the slice's first element and length, with the source, name it.
// Holding the slice keeps its address from being reused for another.
type encodedTop struct {
	mu     sync.Mutex
	first  *claim.ProviderTotal
	n      int
	source claim.Source
	body   []byte
}

func (c *encodedTop) encode(top []claim.ProviderTotal, source claim.Source) []byte {
	if len(top) > 0 {
		c.mu.Lock()
		if c.first == &top[0] && c.n == len(top) && c.source == source {
			b := c.body
			c.mu.Unlock()
			return b
		}
		c.mu.Unlock()
	}
	var buf bytes.Buffer
	encodeJSON(&buf, toTopProvidersResponse(top, string(source)))
	if len(top) > 0 {
		c.mu.Lock()
		c.first, c.n, c.source, c.body = &top[0], len(top), source, buf.Bytes()
		c.mu.Unlock()
	}
	return buf.Bytes()
}

func handleTopProviders(d Deps) http.HandlerFunc {
	var answers encodedTop
	return func(w http.ResponseWriter, r *http.Request) {
		limit := defaultTopLimit
		if s := r.URL.Query().Get("limit"); s != "" {
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
