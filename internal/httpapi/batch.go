package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/claim-process/claim-process/internal/claim"
)

const (
	// maxBatchClaims bounds the claims of one POST /claims/batch.
	maxBatchClaims = 10_000
	// defaultMaxBatchBytes bounds its body, unless Deps.MaxBatchBytes says
	// otherwise.
	defaultMaxBatchBytes = 64 << 20
	// defaultBatchTimeout bounds the whole request, reading and storing,
	// unless Deps.BatchTimeout says otherwise.
	defaultBatchTimeout = 2 * time.Minute
)

// batchResult is the outcome of the claim at one position of a batch.
type batchResult struct {
	Index   int      `json:"index"`
	Status  int      `json:"status"` // what POST /claims would have answered for it
	ID      string   `json:"id,omitempty"`
	ClaimID string   `json:"claim_id,omitempty"`
	NetFee  *money   `json:"net_fee,omitempty"`
	Problem *problem `json:"problem,omitempty"`
}

type batchResponse struct {
	Received int  `json:"received"` // positions in Results: claims read, and where reading stopped
	Created  int  `json:"created"`  // stored by this request (201)
	Existing int  `json:"existing"` // stored before under the same claim_id (200)
	Refused  int  `json:"refused"`  // invalid or conflicting (4xx): fix before resending
	Failed   int  `json:"failed"`   // not stored for now (5xx): resend these
	Complete bool `json:"complete"` // false: reading stopped at the last result's index
	// Results has one entry per claim read, in input order.
	Results []batchResult `json:"results"`
}

var (
	// errBatchFull stops reading a batch past maxBatchClaims.
	errBatchFull = fmt.Errorf("a batch holds at most %d claims; send the rest in another batch", maxBatchClaims)
	// errClaimTooLarge refuses one claim of a batch over the size of a claim body.
	errClaimTooLarge = fmt.Errorf("a claim is at most %d bytes", maxBodyBytes)
)

func handlePostBatch(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mediaType != "application/json" && mediaType != "application/x-ndjson" {
			writeProblem(w, problemFor(http.StatusUnsupportedMediaType,
				"send a batch as application/json (an array of claims) or application/x-ndjson (one claim per line)"))
			return
		}
		if len(r.Header.Values("Idempotency-Key")) > 0 {
			writeProblem(w, problemFor(http.StatusBadRequest,
				"a batch takes no Idempotency-Key: give each claim a claim_id, and a resent batch stores none of them twice"))
			return
		}
		if r.ContentLength > d.MaxBatchBytes {
			writeProblem(w, problemFor(http.StatusRequestEntityTooLarge,
				"a batch body is at most "+strconv.FormatInt(d.MaxBatchBytes, 10)+" bytes"))
			return
		}
		// A batch may take longer than the server's per-request limits.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(d.BatchTimeout))
		_ = rc.SetWriteDeadline(time.Now().Add(d.BatchTimeout + 10*time.Second))
		body := r.Body
		r.Body = requestBody{http.MaxBytesReader(w, r.Body, d.MaxBatchBytes)}

		src := &batchSource{body: r.Body}
		if mediaType == "application/json" {
			if err := src.openArray(); err != nil {
				fail(w, r, d.Log, err)
				return
			}
		}
		var (
			mu      sync.Mutex
			results []batchResult
			faults  []error
		)
		d.Claims.SubmitBatch(r.Context(), ownerScope(r, d.APIKeys), src.claims(mediaType),
			func(i int, res claim.Result, err error) {
				out := batchResult{Index: i, Status: http.StatusCreated}
				if err != nil {
					p, serverFault := batchProblem(err, d.MaxBatchBytes)
					out.Status, out.Problem = p.Status, &p
					if serverFault {
						mu.Lock()
						faults = append(faults, err)
						mu.Unlock()
					}
				} else {
					fee := money(res.Claim.NetFee())
					out.ID, out.ClaimID, out.NetFee = res.Claim.ID, res.Claim.ExternalID, &fee
					if !res.Created {
						out.Status = http.StatusOK
					}
				}
				mu.Lock()
				results = append(results, out)
				mu.Unlock()
			})
		if src.stopped && !errors.Is(src.err, errSlowBody) && !errors.Is(src.err, context.Canceled) {
			// Reading stopped before the body ended (over the limit, past the
			// last claim allowed, or at a claim whose end cannot be found) and
			// the client may be sending still. Read on, as far as the limit
			// again and within the batch's deadline: a connection closed with
			// bytes unread is reset, and the reset can destroy the answer
			// before the client has read it.
			_, _ = io.CopyN(io.Discard, body, d.MaxBatchBytes)
		}
		if src.stopped && errors.Is(src.err, errSlowBody) {
			answerAfterSlowBody(w)
		}
		if len(faults) > 0 {
			d.Log.ErrorContext(r.Context(), "batch claims not stored", "request_id", requestIDOf(r.Context()),
				"claims", len(faults), "err", faults[0])
		}
		slices.SortFunc(results, func(a, b batchResult) int { return a.Index - b.Index })
		if results == nil {
			results = []batchResult{} // "results": [], not null, for an empty batch
		}
		resp := batchResponse{Received: len(results), Complete: !src.stopped, Results: results}
		for _, res := range results {
			switch {
			case res.Status == http.StatusCreated:
				resp.Created++
			case res.Status == http.StatusOK:
				resp.Existing++
			case res.Status >= 500:
				resp.Failed++
			default:
				resp.Refused++
			}
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// batchProblem is errorProblem for one claim of a batch whose body is at
// most maxBytes.
func batchProblem(err error, maxBytes int64) (problem, bool) {
	if errors.Is(err, errBatchFull) || errors.Is(err, errClaimTooLarge) {
		return problemFor(http.StatusRequestEntityTooLarge, err.Error()), false
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return problemFor(http.StatusRequestEntityTooLarge,
			"a batch body is at most "+strconv.FormatInt(maxBytes, 10)+" bytes; send the rest in another batch"), false
	}
	return errorProblem(err)
}

// batchSource reads the claims of a batch one at a time, so that a batch is
// never held in memory whole.
type batchSource struct {
	body    io.Reader
	array   *arrayReader
	stopped bool  // reading ended before the input did
	err     error // why, when stopped
}

// openArray reads the opening bracket of a JSON array of claims.
func (s *batchSource) openArray() error {
	s.array = newArrayReader(s.body, maxBodyBytes)
	err := s.array.open()
	if errors.Is(err, errNotArray) {
		return fmt.Errorf("%w: %v", claim.ErrMalformed, err)
	}
	return err
}

// claims yields each claim of the batch, or the error that makes one
// unreadable. An error that makes the rest unreadable is yielded last.
func (s *batchSource) claims(mediaType string) iter.Seq2[claim.Input, error] {
	if mediaType == "application/json" {
		return s.jsonClaims
	}
	return s.ndjsonClaims
}

func (s *batchSource) jsonClaims(yield func(claim.Input, error) bool) {
	for n := 0; ; n++ {
		raw, err := s.array.next()
		switch {
		case errors.Is(err, io.EOF):
			return
		case errors.Is(err, errItemTooLarge):
			s.stop(yield, errClaimTooLarge)
			return
		case err != nil:
			s.stop(yield, readError(err))
			return
		case n == maxBatchClaims:
			s.stop(yield, errBatchFull)
			return
		}
		if !yield(decodeBatchClaim(raw)) {
			return
		}
	}
}

func (s *batchSource) ndjsonClaims(yield func(claim.Input, error) bool) {
	body := &readErrors{r: s.body}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), maxBodyBytes+1)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if atEOF && body.err != nil && bytes.IndexByte(data, '\n') < 0 {
			// The body ended in a read error (over the size limit, too slow,
			// the client gone), not at its end: what is left is part of a
			// claim, not a claim. The error is the answer for it.
			return 0, nil, body.err
		}
		return bufio.ScanLines(data, atEOF && body.err == nil)
	})
	for n := 0; sc.Scan(); {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if n == maxBatchClaims {
			s.stop(yield, errBatchFull)
			return
		}
		n++
		if !yield(decodeBatchClaim(line)) {
			return
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = errClaimTooLarge // and where the next line starts is unknown
		}
		s.stop(yield, err)
	}
}

// readErrors remembers the error, other than io.EOF, that ended a body.
type readErrors struct {
	r   io.Reader
	err error
}

func (r *readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

func (s *batchSource) stop(yield func(claim.Input, error) bool, err error) {
	s.stopped, s.err = true, err
	yield(claim.Input{}, err)
}

func decodeBatchClaim(raw []byte) (claim.Input, error) {
	if len(raw) > maxBodyBytes {
		return claim.Input{}, errClaimTooLarge
	}
	return claim.DecodeJSONBytes(raw)
}

// readError names a body that is not a JSON array as malformed input; read
// errors (a body over the limit, a client gone) pass unchanged.
func readError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) || errors.Is(err, context.Canceled) || errors.Is(err, errSlowBody) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = errors.New("the array ends too early")
	}
	return fmt.Errorf("%w: invalid JSON: %v; claims after this one were not read", claim.ErrMalformed, err)
}
