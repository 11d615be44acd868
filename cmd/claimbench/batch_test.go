package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit"
)

func sentClaims(t *testing.T, n int) []*sentClaim {
	t.Helper()
	gen := loadkit.NewGenerator(7, loadkit.NPIPool(20), 1.1, 8)
	gen.FixLines(2)
	out := make([]*sentClaim, n)
	for i := range out {
		out[i] = &sentClaim{Claim: gen.Claim(fmt.Sprintf("c-%d", i))}
	}
	return out
}

func itemJSON(sc *sentClaim, index, status int) string {
	return fmt.Sprintf(`{"index":%d,"status":%d,"id":"id-%d","claim_id":%q,"net_fee":%s}`,
		index, status, index, sc.Claim.ExternalID, loadkit.FormatCents(sc.Claim.NetFee()))
}

func TestBatchBodyIsAnArrayOfClaims(t *testing.T) {
	scs := sentClaims(t, 3)
	body := string(batchBody(scs))
	assert.True(t, strings.HasPrefix(body, `[{"claim_id":"c-0","lines":[`), body)
	assert.Equal(t, 3, strings.Count(body, `"claim_id"`))
	assert.Equal(t, "[]", string(batchBody(nil)))
}

func TestBatchAnswerResolvesEachItem(t *testing.T) {
	scs := sentClaims(t, 4)
	body := `{"received":4,"created":1,"existing":1,"refused":1,"complete":true,"results":[` +
		itemJSON(scs[0], 0, 201) + "," + itemJSON(scs[1], 1, 200) + "," +
		`{"index":2,"status":422,"problem":{"status":422}},{"index":3,"status":503,"problem":{"status":503}}]}`
	var st batchStats
	applyBatchAnswer(scs, []byte(body), &st)
	assert.Empty(t, st.Protocol)
	assert.Equal(t, []loadkit.Outcome{loadkit.Acked, loadkit.Acked, loadkit.Refused, loadkit.Unknown},
		[]loadkit.Outcome{scs[0].Outcome, scs[1].Outcome, scs[2].Outcome, scs[3].Outcome})
	assert.Equal(t, "id-0", scs[0].ID)
	assert.Empty(t, scs[0].Problem)
	assert.Equal(t, map[string]int64{"201": 1, "200": 1, "422": 1, "503": 1}, st.Items)
}

func TestBatchAnswerIncompleteLeavesTheRestUnknown(t *testing.T) {
	scs := sentClaims(t, 3)
	body := `{"received":2,"created":1,"existing":0,"refused":1,"complete":false,"results":[` +
		itemJSON(scs[0], 0, 201) + `,{"index":1,"status":400,"problem":{"status":400}}]}`
	var st batchStats
	applyBatchAnswer(scs, []byte(body), &st)
	assert.Empty(t, st.Protocol)
	assert.Equal(t, int64(1), st.Incomplete)
	assert.Equal(t, loadkit.Refused, scs[1].Outcome)
	assert.Equal(t, loadkit.Unknown, scs[2].Outcome, "not read: to be resent")
	assert.Equal(t, int64(1), st.Items["not read"])
}

func TestBatchAnswerBreakingTheContract(t *testing.T) {
	scs := sentClaims(t, 2)
	wrong := strings.Replace(itemJSON(scs[1], 1, 201), `"net_fee":`, `"net_fee":1`, 1)
	body := `{"created":3,"existing":0,"refused":0,"complete":true,"results":[` +
		itemJSON(scs[0], 0, 201) + "," + itemJSON(scs[0], 0, 201) + "," + wrong + "]}"
	var st batchStats
	applyBatchAnswer(scs, []byte(body), &st)
	require.Len(t, st.Protocol, 2, "%v", st.Protocol)
	assert.Contains(t, st.Protocol[0], "repeated")
	assert.Contains(t, st.Protocol[1], "counts")
	assert.Contains(t, scs[1].Problem, "net_fee")

	scs = sentClaims(t, 2)
	st = batchStats{}
	applyBatchAnswer(scs, []byte(`{"complete":true,"results":[`+itemJSON(scs[0], 0, 201)+`]}`), &st)
	require.Len(t, st.Protocol, 2, "%v", st.Protocol)
	assert.Contains(t, st.Protocol[0], "complete but lists 1 of 2")
	assert.Equal(t, loadkit.Unknown, scs[1].Outcome)

	st = batchStats{}
	applyBatchAnswer(scs, []byte(`not json`), &st)
	assert.Equal(t, int64(1), st.ProtocolCount)
}

func TestFixedLineCount(t *testing.T) {
	gen := loadkit.NewGenerator(1, loadkit.NPIPool(10), 1.1, 8)
	gen.FixLines(4)
	for i := range 50 {
		assert.Len(t, gen.Claim(fmt.Sprint(i)).Lines, 4)
	}
}
