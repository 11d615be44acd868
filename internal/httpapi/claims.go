package httpapi

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// money renders cents as a JSON number with exactly two decimals, "2320.00",
// written from the integer so the text is exact.
type money claim.Cents

func (m money) MarshalJSON() ([]byte, error) { return []byte(claim.Cents(m).String()), nil }

// decoders maps the accepted media types to the claim decoder for each.
var decoders = map[string]func(*http.Request) (claim.Input, error){
	"application/json": func(r *http.Request) (claim.Input, error) { return decodeJSONClaim(r.Body) },
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
		key, err := idempotencyKey(r.Header.Values("Idempotency-Key"))
		if err != nil {
			writeProblem(w, problemFor(http.StatusBadRequest, err.Error()))
			return
		}
		if r.ContentLength > maxBodyBytes {
			fail(w, r, d.Log, &http.MaxBytesError{Limit: maxBodyBytes})
			return
		}
		r.Body = requestBody{http.MaxBytesReader(w, r.Body, maxBodyBytes)}
		in, err := decode(r)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		req := claim.Submission{Input: in, Client: ownerScope(r, d.APIKeys), IdempotencyKey: key}
		if d.Queue != nil {
			enqueue(w, r, d, req)
			return
		}
		res, err := d.Claims.Submit(r.Context(), req)
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		w.Header().Set("Location", "/claims/"+res.Claim.ID)
		if res.Replayed {
			w.Header().Set("Idempotency-Replayed", "true")
		}
		status := http.StatusCreated
		if !res.Created {
			status = http.StatusOK // the claim was stored before, under the same claim_id
		}
		writeClaim(w, status, res.Claim)
	}
}

// maxIdempotencyKeyLength bounds an Idempotency-Key.
const maxIdempotencyKeyLength = 255

// idempotencyKey reads the Idempotency-Key header in the IETF draft's form, a
// structured-field string ("..."), or bare. It is "" when absent.
func idempotencyKey(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("send one Idempotency-Key header, not several")
	}
	key := strings.TrimSpace(values[0])
	if strings.HasPrefix(key, `"`) {
		if len(key) < 2 || !strings.HasSuffix(key, `"`) || strings.ContainsAny(key[1:len(key)-1], `"\`) {
			return "", errors.New(`Idempotency-Key: a quoted key must be one string, "like-this"`)
		}
		key = key[1 : len(key)-1]
	}
	if key == "" || len(key) > maxIdempotencyKeyLength {
		return "", fmt.Errorf("Idempotency-Key must be 1 to %d characters", maxIdempotencyKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", errors.New("Idempotency-Key must be printable ASCII")
		}
	}
	return key, nil
}

// queuedResponse answers for a claim accepted for the queue and not stored
// under its own id (yet).
type queuedResponse struct {
	ID         string    `json:"id"`
	ClaimID    string    `json:"claim_id,omitempty"`
	Status     string    `json:"status"` // queued or dead_lettered
	NetFee     money     `json:"net_fee"`
	ReceivedAt time.Time `json:"received_at"`
	Detail     string    `json:"detail,omitempty"` // why a dead-lettered claim was refused
}

// enqueue is POST /claims in async mode: the claim is validated and given
// its id here, and answered 202 only once the broker has confirmed it.
func enqueue(w http.ResponseWriter, r *http.Request, d Deps, req claim.Submission) {
	c, err := d.Claims.Prepare(req)
	if err != nil {
		fail(w, r, d.Log, err)
		return
	}
	if req.IdempotencyKey != "" {
		// The worker will keep the key: the client's allowance is taken now.
		if err := d.Claims.AdmitKey(r.Context(), req.Client); err != nil {
			fail(w, r, d.Log, err)
			return
		}
	}
	if err := d.Queue.Enqueue(r.Context(), c, req.IdempotencyKey); err != nil {
		fail(w, r, d.Log, err)
		return
	}
	w.Header().Set("Location", "/claims/"+c.ID)
	writeJSON(w, http.StatusAccepted, queuedResponse{ID: c.ID, ClaimID: c.ExternalID, Status: claim.StatusQueued,
		NetFee: money(c.NetFee()), ReceivedAt: c.ReceivedAt})
}

// handleGetClaim answers a claim, or a queued claim's status, to the client
// that sent it; any other client gets the 404 of an id never accepted.
func handleGetClaim(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Statuses.ClaimStatus(r.Context(), ownerScope(r, d.APIKeys), chi.URLParam(r, "id"))
		switch {
		case err != nil:
			fail(w, r, d.Log, err)
		case st.State == claim.StatusStored:
			writeClaim(w, http.StatusOK, st.Claim)
		default:
			writeJSON(w, http.StatusOK, queuedResponse{ID: st.ID, ClaimID: st.ClaimID, Status: st.State,
				NetFee: money(st.NetFee), ReceivedAt: st.ReceivedAt, Detail: st.Reason})
		}
	}
}
