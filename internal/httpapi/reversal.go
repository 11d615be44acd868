package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/claim-process/claim-process/internal/claim"
)

// maxReversalBody bounds a reversal's body.
const maxReversalBody = 64 << 10

// reversalRequest is the optional body of POST /claims/{id}/reversal.
type reversalRequest struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// handleReverseClaim reverses one of the client's claims, named by its id
// or its claim_id, and answers the claim as it then stands. The same
// reversal again (with or without an Idempotency-Key) answers the same: a
// reversed claim stays as it was first reversed.
func handleReverseClaim(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := idempotencyKey(r.Header.Values("Idempotency-Key")); err != nil {
			writeProblem(w, problemFor(http.StatusBadRequest, err.Error()))
			return
		}
		req, p, ok := readReversal(w, r)
		if !ok {
			writeProblem(w, p)
			return
		}
		client, ref := ownerScope(r, d.APIKeys), chi.URLParam(r, "id")
		c, err := d.Claims.Reverse(r.Context(), client, ref, req.Reason, req.Detail)
		if errors.Is(err, claim.ErrNotFound) && d.Statuses != nil {
			// Perhaps accepted for the queue and not stored yet (async mode).
			if st, serr := d.Statuses.ClaimStatus(r.Context(), client, ref); serr == nil && st.State == claim.StatusQueued {
				err = &claim.RetryAfter{Err: claim.ErrStillQueued, After: time.Second}
			}
		}
		if err != nil {
			fail(w, r, d.Log, err)
			return
		}
		writeClaim(w, http.StatusOK, c)
	}
}

// readReversal reads the optional body: none, or {"reason": ..., "detail": ...}.
// No body reverses with reason "other".
func readReversal(w http.ResponseWriter, r *http.Request) (reversalRequest, problem, bool) {
	req := reversalRequest{Reason: claim.ReasonOther}
	if r.ContentLength > maxReversalBody {
		return req, problemFor(http.StatusRequestEntityTooLarge,
			"a reversal body is at most "+strconv.Itoa(maxReversalBody)+" bytes; nothing was changed"), false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReversalBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return req, problemFor(http.StatusRequestEntityTooLarge,
			"a reversal body is at most "+strconv.Itoa(maxReversalBody)+" bytes; nothing was changed"), false
	case err != nil:
		return req, problemFor(http.StatusBadRequest, "the request body could not be read; nothing was changed"), false
	case len(bytes.TrimSpace(body)) == 0:
		return req, problem{}, true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	req.Reason = ""
	if err := dec.Decode(&req); err != nil || dec.More() {
		return req, problemFor(http.StatusBadRequest,
			`the body must be one JSON object {"reason": ..., "detail": ...} (both optional); nothing was changed`), false
	}
	var problems claim.Problems
	if req.Reason == "" {
		req.Reason = claim.ReasonOther
	}
	if !claim.ValidReversalReason(req.Reason) {
		problems = append(problems, claim.Problem{Line: -1, Field: "reason", Rule: "one_of",
			Detail: "reason must be payment_failed, sent_in_error or other"})
	}
	if len(req.Detail) > claim.MaxReversalDetail {
		problems = append(problems, claim.Problem{Line: -1, Field: "detail", Rule: "max_length",
			Detail: "detail is at most " + strconv.Itoa(claim.MaxReversalDetail) + " bytes"})
	}
	if len(problems) > 0 {
		p := problemFor(http.StatusUnprocessableEntity, "the reversal is invalid; nothing was changed")
		p.Type, p.Title = invalidReversalType, "Invalid reversal"
		p.Errors = toProblemItems(problems)
		return req, p, false
	}
	return req, problem{}, true
}
