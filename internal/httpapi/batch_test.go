package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/claim"
)

// batchClaim is a claim of one line for provider npi with the given provider
// fee in dollars; allowed 10, coinsurance 10, copay 20, so its net fee is fee + 20.
func batchClaim(claimID, npi string, fee int) string {
	id := ""
	if claimID != "" {
		id = fmt.Sprintf(`"claim_id": %q, `, claimID)
	}
	return fmt.Sprintf(`{%s"lines": [{"service_date": "2025-01-15", "submitted_procedure": "D0180",
	  "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": %q, "provider_fees": %d,
	  "allowed_fees": 10, "member_coinsurance": 10, "member_copay": 20}]}`, id, npi, fee)
}

type batchAnswer struct {
	Received, Created, Existing, Refused, Failed int
	Complete                                     bool
	Results                                      []struct {
		Index   int
		Status  int
		ID      string
		ClaimID string          `json:"claim_id"`
		NetFee  json.RawMessage `json:"net_fee"`
		Problem *struct {
			Status int
			Detail string
			Errors []struct {
				Line  *int
				Field string
				Rule  string
			}
		}
	}
}

func mustBatch(t *testing.T, r response) batchAnswer {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var a batchAnswer
	require.NoError(t, json.Unmarshal(r.body, &a), string(r.body))
	for i, res := range a.Results {
		require.Equal(t, i, res.Index, "one result per position, in order")
	}
	return a
}

func TestBatchEachClaimOnItsOwn(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	first := batchClaim("c-1", "1000000001", 100)
	body := "[" + strings.Join([]string{
		first,
		strings.Replace(batchClaim("", "1000000002", 50), `"provider_fees": 50`, `"provider_fees": "12.345"`, 1),
		first, // the same claim again: stored once
		batchClaim("", "1000000002", 200),
		batchClaim("c-1", "1000000001", 999), // the same claim_id, another claim
		`"not a claim"`,
	}, ",\n") + "]"
	a := mustBatch(t, mustPostWith(t, s.url+"/claims/batch", body, nil))
	require.Equal(t, 6, a.Received)
	require.Equal(t, 2, a.Created)
	require.Equal(t, 1, a.Existing)
	require.Equal(t, 3, a.Refused)
	require.Equal(t, 0, a.Failed)
	require.True(t, a.Complete)

	r := a.Results
	require.Equal(t, 201, r[0].Status)
	require.Equal(t, "c-1", r[0].ClaimID)
	require.Equal(t, "120.00", string(r[0].NetFee))
	require.Equal(t, 422, r[1].Status)
	require.Equal(t, "provider_fees", r[1].Problem.Errors[0].Field, "the problem names the field")
	require.Equal(t, 0, *r[1].Problem.Errors[0].Line)
	require.Equal(t, 200, r[2].Status)
	require.Equal(t, r[0].ID, r[2].ID, "a resent claim_id answers with the stored claim")
	require.Equal(t, 201, r[3].Status)
	require.Equal(t, "220.00", string(r[3].NetFee))
	require.Equal(t, 422, r[4].Status)
	require.Contains(t, r[4].Problem.Detail, "claim_id")
	require.Equal(t, 400, r[5].Status)

	for _, i := range []int{0, 3} {
		got := mustDo(t, http.MethodGet, s.url+"/claims/"+r[i].ID, "", nil)
		require.Equal(t, http.StatusOK, got.status)
		var stored struct {
			NetFee json.RawMessage `json:"net_fee"`
		}
		require.NoError(t, json.Unmarshal(got.body, &stored))
		require.Equal(t, string(r[i].NetFee), string(stored.NetFee))
	}
	require.Equal(t, map[string]claim.Cents{"1000000001": 12000, "1000000002": 22000}, mustTotals(t, s),
		"totals moved by the stored claims only")
}

func TestBatchNDJSON(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	ndjson := strings.Join([]string{
		ndjsonLine(batchClaim("a", "1000000001", 100)), "", ndjsonLine(batchClaim("b", "1000000001", 40)) + "\r", "{not json",
		ndjsonLine(batchClaim("c", "1000000003", 30)),
	}, "\n")
	a := mustBatch(t, mustDoWith(t, http.MethodPost, s.url+"/claims/batch",
		map[string]string{"Content-Type": "application/x-ndjson"}, strings.NewReader(ndjson)))
	require.Equal(t, 4, a.Received, "blank lines are not claims")
	require.Equal(t, []int{201, 201, 400, 201}, []int{a.Results[0].Status, a.Results[1].Status, a.Results[2].Status, a.Results[3].Status})
	require.True(t, a.Complete, "a bad line does not stop the lines after it")
	require.Equal(t, map[string]claim.Cents{"1000000001": 12000 + 6000, "1000000003": 5000}, mustTotals(t, s))
}

func ndjsonLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Malformed JSON part-way stops the reading; what came before is stored and
// the answer says where reading stopped.
func TestBatchMalformedPartWay(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	body := "[" + batchClaim("x", "1000000001", 100) + `, {"lines": [` + "]"
	a := mustBatch(t, mustPostWith(t, s.url+"/claims/batch", body, nil))
	require.False(t, a.Complete)
	require.Len(t, a.Results, 2)
	require.Equal(t, 201, a.Results[0].Status)
	require.Equal(t, 400, a.Results[1].Status)
	require.Contains(t, a.Results[1].Problem.Detail, "claims after this one were not read")
	require.Equal(t, map[string]claim.Cents{"1000000001": 12000}, mustTotals(t, s))
}

// An item whose brackets do not match has no knowable end: the reading stops
// there, rather than report the items after it at the wrong positions.
func TestBatchMismatchedBracketsStop(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	body := "[" + batchClaim("m-0", "1000000001", 100) + `, {"x": [}, ` + batchClaim("m-2", "1000000001", 100) + "]"
	a := mustBatch(t, mustPostWith(t, s.url+"/claims/batch", body, nil))
	require.False(t, a.Complete)
	require.Len(t, a.Results, 2)
	require.Equal(t, 201, a.Results[0].Status)
	require.Equal(t, 400, a.Results[1].Status)
	require.Equal(t, map[string]claim.Cents{"1000000001": 12000}, mustTotals(t, s), "m-2 was not read")
}

func TestBatchWholeRequestErrors(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   string
		status int
		detail string
	}{
		{"not an array", nil, batchClaim("", "1000000001", 1), 400, "JSON array of claims"},
		{"not JSON", nil, "claims!", 400, "JSON array of claims"},
		{"empty", nil, "", 400, "JSON array of claims"},
		{"idempotency key", map[string]string{"Idempotency-Key": "k"}, "[]", 400, "claim_id"},
		{"csv", map[string]string{"Content-Type": "text/csv"}, "a,b\n", 415, "x-ndjson"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustPostWith(t, s.url+"/claims/batch", tc.body, tc.header)
			require.Equal(t, tc.status, r.status, string(r.body))
			require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
			require.Contains(t, r.json(t)["detail"], tc.detail)
		})
	}
	a := mustBatch(t, mustPostWith(t, s.url+"/claims/batch", " [ ] ", nil))
	require.Equal(t, 0, a.Received)
	require.True(t, a.Complete)
	require.Empty(t, mustTotals(t, s))
}

// Past 10,000 claims the batch stops: the first 10,000 have their outcomes,
// the next position says why reading stopped.
func TestBatchAtMostTenThousand(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	body := "[" + strings.Repeat(`{"lines": []},`, 10_000) + batchClaim("", "1000000001", 100) + "]"
	a := mustBatch(t, mustPostWith(t, s.url+"/claims/batch", body, nil))
	require.False(t, a.Complete)
	require.Equal(t, 10_001, a.Received)
	require.Equal(t, 10_000, a.Refused-1)
	require.Equal(t, 422, a.Results[9_999].Status)
	require.Equal(t, 413, a.Results[10_000].Status)
	require.Contains(t, a.Results[10_000].Problem.Detail, "at most 10000 claims")
	require.Empty(t, mustTotals(t, s), "the claim past the limit was not stored")
}

// The batch is stored as it is read: a claim is committed while the rest of
// the body has not even been sent.
func TestBatchIsStreamed(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, s.url+"/claims/batch", pr)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-ndjson")
	answered := make(chan response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- response{}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answered <- response{status: res.StatusCode, header: res.Header, body: b}
	}()
	_, err = io.WriteString(pw, ndjsonLine(batchClaim("early", "1000000001", 100))+"\n")
	require.NoError(t, err)

	conn, err := pgx.Connect(context.Background(), s.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Eventually(t, func() bool {
		var n int
		err := conn.QueryRow(context.Background(), "SELECT count(*) FROM claims WHERE external_id = 'early'").Scan(&n)
		return err == nil && n == 1
	}, 10*time.Second, 10*time.Millisecond, "the first claim is stored before the body ends")

	_, err = io.WriteString(pw, ndjsonLine(batchClaim("late", "1000000001", 40))+"\n")
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	res := <-answered
	mustMatchSpec(t, req, nil, res) // the streamed body is not kept
	a := mustBatch(t, res)
	require.Equal(t, 2, a.Created)
}
