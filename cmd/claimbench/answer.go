package main

import (
	"bytes"

	"github.com/claim-process/claim-process/internal/loadkit"
)

// matchAnswer says whether body is, byte for byte, the answer claimd writes
// for c stored under some id at some time, and returns that id. It reads
// the id and received_at and compares everything else with c's own rendering,
// so a match means every field is exactly what was sent, at a fraction of a
// JSON decode's cost. Any other body (a difference, or a different layout of
// the same content) is left to checkAnswer's decoding, which names what
// differs, if anything.
func matchAnswer(c *loadkit.Claim, body []byte) (id string, ok bool) {
	m := matcher{rest: bytes.TrimRight(body, " \n"), ok: true}
	m.lit(`{"id":"`)
	id = m.until('"')
	if c.ExternalID != "" {
		m.lit(`,"claim_id":`)
		m.str(c.ExternalID)
	}
	m.lit(`,"status":"stored","net_fee":`)
	m.lit(loadkit.FormatCents(c.NetFee()))
	m.lit(`,"received_at":"`)
	m.until('"')
	m.lit(`,"lines":[`)
	for i, l := range c.Lines {
		if i > 0 {
			m.lit(",")
		}
		m.lit(`{"service_date":`)
		m.str(l.ServiceDate)
		m.lit(`,"submitted_procedure":`)
		m.str(l.Procedure)
		m.lit(`,"quadrant":`)
		if l.Quadrant == "" {
			m.lit("null")
		} else {
			m.str(l.Quadrant)
		}
		m.lit(`,"plan_group":`)
		m.str(l.PlanGroup)
		m.lit(`,"subscriber":`)
		m.str(l.Subscriber)
		m.lit(`,"provider_npi":`)
		m.str(l.NPI)
		for _, f := range [...]struct {
			name  string
			cents int64
		}{
			{`,"provider_fees":`, l.Fees}, {`,"allowed_fees":`, l.Allowed},
			{`,"member_coinsurance":`, l.Coinsurance}, {`,"member_copay":`, l.Copay},
			{`,"net_fee":`, l.NetFee()},
		} {
			m.lit(f.name)
			m.lit(loadkit.FormatCents(f.cents))
		}
		m.lit("}")
	}
	m.lit("]}")
	return id, m.ok && id != "" && len(m.rest) == 0
}

// matcher consumes a body from the front; ok turns false at the first
// difference and stays so.
type matcher struct {
	rest []byte
	ok   bool
}

func (m *matcher) lit(s string) {
	if !m.ok || len(m.rest) < len(s) || string(m.rest[:len(s)]) != s {
		m.ok = false
		return
	}
	m.rest = m.rest[len(s):]
}

// str matches s as a JSON string. The generator's text is printable ASCII
// that JSON writes as it is, between quotes; any other text does not match
// here and is left to the decoder.
func (m *matcher) str(s string) {
	if !loadkit.PlainJSON(s) {
		m.ok = false
		return
	}
	m.lit(`"`)
	m.lit(s)
	m.lit(`"`)
}

// until returns the text up to the next c and consumes it with c.
func (m *matcher) until(c byte) string {
	if !m.ok {
		return ""
	}
	i := bytes.IndexByte(m.rest, c)
	if i < 0 {
		m.ok = false
		return ""
	}
	v := string(m.rest[:i])
	m.rest = m.rest[i+1:]
	return v
}
