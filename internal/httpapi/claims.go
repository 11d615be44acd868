package httpapi

import (
	"mime"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// money renders cents as a JSON number with exactly two decimals, "2320.00",
// written from the integer so the text is exact.
type money claim.Cents

func (m money) MarshalJSON() ([]byte, error) { return []byte(claim.Cents(m).String()), nil }

type claimResponse struct {
	ID         string         `json:"id"`
	NetFee     money          `json:"net_fee"`
	ReceivedAt time.Time      `json:"received_at"`
	Lines      []lineResponse `json:"lines"`
}

type lineResponse struct {
	ServiceDate        string  `json:"service_date"`
	SubmittedProcedure string  `json:"submitted_procedure"`
	Quadrant           *string `json:"quadrant"`
	PlanGroup          string  `json:"plan_group"`
	Subscriber         string  `json:"subscriber"`
	ProviderNPI        string  `json:"provider_npi"`
	ProviderFees       money   `json:"provider_fees"`
	AllowedFees        money   `json:"allowed_fees"`
	MemberCoinsurance  money   `json:"member_coinsurance"`
	MemberCopay        money   `json:"member_copay"`
	NetFee             money   `json:"net_fee"`
}

func toClaimResponse(c claim.Claim) claimResponse {
	out := claimResponse{ID: c.ID, NetFee: money(c.NetFee()), ReceivedAt: c.ReceivedAt, Lines: make([]lineResponse, len(c.Lines))}
	for i, l := range c.Lines {
		var quadrant *string
		if l.Quadrant != "" {
			q := l.Quadrant
			quadrant = &q
		}
		out.Lines[i] = lineResponse{
			ServiceDate:        l.ServiceDate.Format(time.DateOnly),
			SubmittedProcedure: l.SubmittedProcedure,
			Quadrant:           quadrant,
			PlanGroup:          l.PlanGroup,
			Subscriber:         l.Subscriber,
			ProviderNPI:        l.ProviderNPI,
			ProviderFees:       money(l.ProviderFees),
			AllowedFees:        money(l.AllowedFees),
			MemberCoinsurance:  money(l.MemberCoinsurance),
			MemberCopay:        money(l.MemberCopay),
			NetFee:             money(l.NetFee()),
		}
	}
	return out
}

// decoders maps the accepted media types to the claim decoder for each.
var decoders = map[string]func(*http.Request) (claim.Input, error){
	"application/json": func(r *http.Request) (claim.Input, error) { return claim.DecodeJSON(r.Body) },
	"text/csv":         func(r *http.Request) (claim.Input, error) { return claim.DecodeCSV(r.Body) },
	"application/csv":  func(r *http.Request) (claim.Input, error) { return claim.DecodeCSV(r.Body) },
}

func handlePostClaim(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		decode, ok := decoders[mediaType]
		if !ok {
			writeProblem(w, problemFor(http.StatusUnsupportedMediaType,
				"send a claim as application/json or text/csv"))
			return
		}
		if r.ContentLength > maxBodyBytes {
			fail(w, r, d.Log, &http.MaxBytesError{Limit: maxBodyBytes})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		in, err := decode(r)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		c, err := d.Claims.Submit(r.Context(), in)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		w.Header().Set("Location", "/claims/"+c.ID)
		writeJSON(w, http.StatusCreated, toClaimResponse(c))
	}
}

func handleGetClaim(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := d.ClaimReader.Claim(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		writeJSON(w, http.StatusOK, toClaimResponse(c))
	}
}
