package httpapi

import (
	"net/http"
	"strconv"

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

func handleTopProviders(d Deps) http.HandlerFunc {
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
		writeJSON(w, http.StatusOK, toTopProvidersResponse(top, string(source)))
	}
}
