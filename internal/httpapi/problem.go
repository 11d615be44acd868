package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

// problem is an RFC 9457 problem details body, with the claim's problems as
// an extension member.
type problem struct {
	Type   string        `json:"type"`
	Title  string        `json:"title"`
	Status int           `json:"status"`
	Detail string        `json:"detail,omitempty"`
	Errors []problemItem `json:"errors,omitempty"`

	retryAfter int // seconds; sent as the Retry-After header when > 0
}

// problemItem is one thing wrong with a claim.
type problemItem struct {
	Line   *int   `json:"line"` // index of the line in the input, from 0; null for the claim as a whole
	Field  string `json:"field"`
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

const invalidClaimType = "urn:claim-process:problem:invalid-claim"

// invalidReversalType is the problem type of a reversal with bad fields.
const invalidReversalType = "urn:claim-process:problem:invalid-reversal"

// invalidParameterType is the problem type of a query parameter that is
// wrong: its one error names the parameter.
const invalidParameterType = "urn:claim-process:problem:invalid-parameter"

// paramProblem is the 400 of a wrong query parameter, naming it.
func paramProblem(param, detail string) problem {
	p := problemFor(http.StatusBadRequest, param+": "+detail)
	p.Type, p.Title = invalidParameterType, "Invalid parameter"
	p.Errors = []problemItem{{Field: param, Rule: "query_parameter", Detail: detail}}
	return p
}

// statusClientClosedRequest is the de-facto status (nginx's) for a request
// whose client hung up before the answer.
const statusClientClosedRequest = 499

func problemFor(status int, detail string) problem {
	title := http.StatusText(status)
	if status == statusClientClosedRequest {
		title = "Client Closed Request"
	}
	return problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
}

func toProblemItems(ps claim.Problems) []problemItem {
	out := make([]problemItem, len(ps))
	for i, p := range ps {
		out[i] = problemItem{Field: p.Field, Rule: p.Rule, Detail: p.Detail}
		if p.Line >= 0 {
			line := p.Line
			out[i].Line = &line
		}
	}
	return out
}

// errorProblem maps an error from the layers below to the problem sent to the
// client. It reports whether the error is the server's fault (a 5xx).
func errorProblem(err error) (problem, bool) {
	var (
		problems claim.Problems
		tooLarge *http.MaxBytesError
		replaced *claim.AlreadyReplaced
	)
	switch {
	case errors.As(err, &problems):
		p := problemFor(http.StatusUnprocessableEntity, "the claim is invalid; nothing was stored")
		p.Type, p.Title = invalidClaimType, "Invalid claim"
		p.Errors = toProblemItems(problems)
		return p, false
	case errors.As(err, &tooLarge):
		return problemFor(http.StatusRequestEntityTooLarge,
			"a claim body is at most "+strconv.Itoa(maxBodyBytes)+" bytes"), false
	case errors.Is(err, claim.ErrMalformed):
		return problemFor(http.StatusBadRequest, err.Error()), false
	case errors.Is(err, claim.ErrNotFound):
		return problemFor(http.StatusNotFound, "no claim with this id"), false
	case errors.As(err, &replaced):
		return problemFor(http.StatusConflict, replaced.Error()+"; nothing was stored: correct the claim that replaced it"), false
	case errors.Is(err, claim.ErrStillQueued):
		p := problemFor(http.StatusConflict, err.Error()+"; retry once a worker has stored it")
		p.retryAfter = retryAfterSeconds(err, 1)
		return p, false
	case errors.Is(err, claim.ErrKeyInFlight):
		p := problemFor(http.StatusConflict, err.Error()+"; retry after it finishes")
		p.retryAfter = retryAfterSeconds(err, 1)
		return p, false
	case errors.Is(err, claim.ErrKeyReused):
		return problemFor(http.StatusUnprocessableEntity, err.Error()+"; use a new key for a new claim"), false
	case errors.Is(err, claim.ErrClaimIDReused):
		return problemFor(http.StatusUnprocessableEntity, err.Error()+"; a claim_id names one claim"), false
	case errors.Is(err, claim.ErrTooManyKeys):
		p := problemFor(http.StatusTooManyRequests, err.Error()+
			"; keys are forgotten after IDEMPOTENCY_TTL: retry later, or send the claim without a key and with a claim_id")
		p.retryAfter = retryAfterSeconds(err, 60)
		return p, false
	case errors.Is(err, claim.ErrTooManyQueued):
		p := problemFor(http.StatusTooManyRequests, err.Error()+"; retry once the workers have stored some of them")
		p.retryAfter = retryAfterSeconds(err, 60)
		return p, false
	case errors.Is(err, errSlowBody):
		return problemFor(http.StatusRequestTimeout, "the request body arrived too slowly; nothing was stored: send it again"), false
	case errors.Is(err, claim.ErrBusy):
		p := problemFor(http.StatusServiceUnavailable, err.Error()+"; try again in a moment")
		p.retryAfter = retryAfterSeconds(err, 1)
		return p, false
	case errors.Is(err, claim.ErrUnavailable):
		p := problemFor(http.StatusServiceUnavailable,
			"storage is unavailable; try again (with the same claim_id or Idempotency-Key a retry cannot store the claim twice)")
		p.retryAfter = retryAfterSeconds(err, 2)
		return p, true
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer and it is no fault of ours.
		return problemFor(statusClientClosedRequest, "the client closed the request"), false
	case errors.Is(err, context.DeadlineExceeded):
		p := problemFor(http.StatusServiceUnavailable, "the request took too long; try again")
		p.retryAfter = 1
		return p, true
	default:
		return problemFor(http.StatusInternalServerError, "internal error"), true
	}
}

// retryAfterSeconds is when err says to retry, in whole seconds, or def.
func retryAfterSeconds(err error, def int) int {
	var ra *claim.RetryAfter
	if errors.As(err, &ra) {
		return retrySeconds(ra.After)
	}
	return def
}

// retrySeconds is a wait as a Retry-After: whole seconds, rounded up, at
// least one.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func writeProblem(w http.ResponseWriter, p problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	w.WriteHeader(p.Status)
	encodeJSON(w, p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	encodeJSON(w, v)
}

// encodeJSON writes v without escaping <, > and & ("Bearer <key>" stays
// readable): the answers are JSON, never HTML.
func encodeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// fail answers a request with the problem err maps to. Server faults are
// logged here, once; nothing below the HTTP layer logs the errors it returns.
func fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p, serverFault := errorProblem(err)
	if errors.Is(err, claim.ErrUnavailable) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		p.Detail = "storage is unavailable; try again" // a read: there is nothing to store twice
	}
	if serverFault {
		log.ErrorContext(r.Context(), "request failed", "method", methodLabel(r.Method), "path", r.URL.Path,
			"request_id", requestIDOf(r.Context()), "status", p.Status, "err", err)
	}
	if p.Status == http.StatusRequestTimeout {
		answerAfterSlowBody(w)
	}
	writeProblem(w, p)
}

// errSlowBody marks a request body that did not arrive before the server's
// read deadline: the client's fault, answered 408.
var errSlowBody = errors.New("the request body arrived too slowly")

// requestBody names the ways reading a request body fails by the client's
// doing: a read deadline met is errSlowBody (408); a body that ends before
// its length (the client hung up) is malformed (400). Neither is a fault of
// the server, to be logged as one.
type requestBody struct{ io.ReadCloser }

func (b requestBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil || errors.Is(err, io.EOF):
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: %w", errSlowBody, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: the body ended before all of it was sent", claim.ErrMalformed)
	}
	return n, err
}

// answerAfterSlowBody lets the answer to a body cut off by the read
// deadline be written (the write deadline may be as old as the read one),
// and closes the connection after it: the rest of the body is never read.
func answerAfterSlowBody(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.Header().Set("Connection", "close")
}
