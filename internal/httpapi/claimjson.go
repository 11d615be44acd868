package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/claim-process/claim-process/internal/claim"
)

// A stored claim is the answer every POST /claims writes, so it is written
// by hand into a pooled buffer: the same bytes encodeJSON writes for
// toClaimResponse (tested), without reflection. A body is read into a pooled
// buffer too; the decoded claim holds no reference to it.

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps the occasional large body's buffer out of the pool.
const maxPooledBuffer = 64 << 10

func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		buffers.Put(b)
	}
}

// decodeJSONClaim reads a JSON claim body through a pooled buffer.
func decodeJSONClaim(body io.Reader) (claim.Input, error) {
	buf := getBuffer()
	defer putBuffer(buf)
	if _, err := buf.ReadFrom(body); err != nil {
		return claim.Input{}, err
	}
	return claim.DecodeJSONBytes(buf.Bytes())
}

// appendClaim appends c as claimResponse encodes it, with encodeJSON's
// trailing newline.
func appendClaim(b []byte, c claim.Claim) []byte {
	return append(appendClaimObject(b, c, true), '\n')
}

// appendClaimObject appends c as claimResponse encodes it; without
// subscribers, its lines leave out their subscriber numbers (the list form).
func appendClaimObject(b []byte, c claim.Claim, subscribers bool) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, c.ID)
	if c.ExternalID != "" {
		b = append(b, `,"claim_id":`...)
		b = appendString(b, c.ExternalID)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, c.Status())
	if r := c.Reversal; r != nil {
		b = append(b, `,"reversed_at":"`...)
		b = r.At.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","reason":`...)
		b = appendString(b, r.Reason)
		if r.Detail != "" {
			b = append(b, `,"detail":`...)
			b = appendString(b, r.Detail)
		}
		if r.ReplacedBy != "" {
			b = append(b, `,"replaced_by":`...)
			b = appendString(b, r.ReplacedBy)
		}
	}
	if c.Replaces != "" {
		b = append(b, `,"replaces":`...)
		b = appendString(b, c.Replaces)
	}
	b = append(b, `,"net_fee":`...)
	b = append(b, c.NetFee().String()...)
	b = append(b, `,"received_at":"`...)
	b = c.ReceivedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","lines":[`...)
	for i, l := range c.Lines {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"service_date":"`...)
		b = l.ServiceDate.AppendFormat(b, time.DateOnly)
		b = append(b, `","submitted_procedure":`...)
		b = appendString(b, l.SubmittedProcedure)
		b = append(b, `,"quadrant":`...)
		if l.Quadrant == "" {
			b = append(b, "null"...)
		} else {
			b = appendString(b, l.Quadrant)
		}
		b = append(b, `,"plan_group":`...)
		b = appendString(b, l.PlanGroup)
		if subscribers {
			b = append(b, `,"subscriber":`...)
			b = appendString(b, l.Subscriber)
		}
		b = append(b, `,"provider_npi":`...)
		b = appendString(b, l.ProviderNPI)
		for _, m := range [...]struct {
			name  string
			cents claim.Cents
		}{
			{`,"provider_fees":`, l.ProviderFees}, {`,"allowed_fees":`, l.AllowedFees},
			{`,"member_coinsurance":`, l.MemberCoinsurance}, {`,"member_copay":`, l.MemberCopay},
			{`,"net_fee":`, l.NetFee()},
		} {
			b = append(b, m.name...)
			b = append(b, m.cents.String()...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendString appends s as a JSON string the way encodeJSON writes it.
// Printable ASCII other than '"' and '\\' is written as it is (encodeJSON
// does not escape <, > and &); any other text goes through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			var buf bytes.Buffer
			encodeJSON(&buf, s)
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// writeClaim answers a stored claim with status, encoded into a pooled
// buffer (appended in place once the buffer has grown to an answer's size).
func writeClaim(w http.ResponseWriter, status int, c claim.Claim) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	buf := getBuffer()
	defer putBuffer(buf)
	buf.Write(appendClaim(buf.AvailableBuffer(), c))
	_, _ = w.Write(buf.Bytes())
}
