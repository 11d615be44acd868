package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/claim-process/claim-process/internal/claim"
)

// ClaimFinder lists one client's stored claims (GET /claims).
type ClaimFinder interface {
	// FindClaims answers a page and the cursor of the next ("" when there
	// is none).
	FindClaims(ctx context.Context, client string, q claim.Query) (found []claim.Claim, next string, err error)
}

// handleFindClaims answers GET /claims: the calling client's claims by its
// own claim_id, or by provider and service dates, newest first, a page at a
// time. A listed claim's lines leave out subscriber numbers; GET
// /claims/{id} gives them.
func handleFindClaims(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, bad := parseClaimQuery(r.URL.Query())
		if bad != nil {
			writeProblem(w, *bad)
			return
		}
		found, next, err := d.Finder.FindClaims(r.Context(), ownerScope(r, d.APIKeys), q)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		b := append(make([]byte, 0, 512*len(found)+64), `{"claims":[`...)
		for i, c := range found {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendClaimObject(b, c, false)
		}
		b = append(b, ']')
		if next != "" {
			b = append(b, `,"next_cursor":`...)
			b = appendString(b, next)
		}
		b = append(b, "}\n"...)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	}
}

// parseClaimQuery reads GET /claims's parameters: claim_id alone, or
// provider_npi with from, to, limit and cursor. A wrong one is a 400 naming
// it.
func parseClaimQuery(v url.Values) (claim.Query, *problem) {
	bad := func(param, detail string) (claim.Query, *problem) {
		p := paramProblem(param, detail)
		return claim.Query{}, &p
	}
	q := claim.Query{ExternalID: v.Get("claim_id"), ProviderNPI: v.Get("provider_npi"), Limit: claim.DefaultQueryLimit}
	switch {
	case v.Has("claim_id") && v.Has("provider_npi"):
		return bad("claim_id", "give claim_id alone, or provider_npi (with from, to, limit, cursor)")
	case v.Has("claim_id"):
		for _, other := range []string{"from", "to", "limit", "cursor"} {
			if v.Has(other) {
				return bad(other, "goes with provider_npi; claim_id finds one claim")
			}
		}
		if q.ExternalID == "" || len(q.ExternalID) > claim.MaxExternalIDLength || !claim.StorableText(q.ExternalID) {
			return bad("claim_id", "must be your claim's id: 1 to "+strconv.Itoa(claim.MaxExternalIDLength)+" bytes of UTF-8 text without NUL")
		}
		return q, nil
	case !v.Has("provider_npi"):
		return bad("provider_npi", "give claim_id, or provider_npi (with from, to, limit, cursor)")
	case !claim.ValidNPIFormat(q.ProviderNPI):
		return bad("provider_npi", "must be exactly 10 digits")
	}
	for _, d := range []struct {
		param string
		to    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(d.param); v.Has(d.param) {
			t, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return bad(d.param, "must be a date, YYYY-MM-DD")
			}
			*d.to = t
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.From.After(q.To) {
		return bad("from", "is after to")
	}
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > claim.MaxQueryLimit {
			return bad("limit", "must be a whole number from 1 to "+strconv.Itoa(claim.MaxQueryLimit))
		}
		q.Limit = n
	}
	if v.Has("cursor") {
		if _, err := uuid.Parse(v.Get("cursor")); err != nil {
			return bad("cursor", "must be the next_cursor of the page before")
		}
		q.Before = v.Get("cursor")
	}
	return q, nil
}
