package claim_test

import (
	"bytes"
	"testing"

	"github.com/claim-process/claim-process/internal/claim"
)

func BenchmarkParseSampleCSV(b *testing.B) {
	data, err := readSample()
	if err != nil {
		b.Fatal(err)
	}
	rules := claim.DefaultRules()
	for b.Loop() {
		in, err := claim.DecodeCSV(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := claim.Parse(in, rules); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCents(b *testing.B) {
	for b.Loop() {
		if _, err := claim.ParseCents("$1,234.50 "); err != nil {
			b.Fatal(err)
		}
	}
}

// A four-line JSON claim as the payment service sends it, through decoding,
// validation and the fingerprint: claimd's own work per claim.
func BenchmarkDecodeParseJSON(b *testing.B) {
	line := `{"service_date": "2025-01-15", "submitted_procedure": "D0180", "quadrant": "UR",
	  "plan_group": "GRP-1000", "subscriber": "3730189502", "provider_npi": "1497775530",
	  "provider_fees": "150.00", "allowed_fees": "10.00", "member_coinsurance": "10.00", "member_copay": "20.00"}`
	body := []byte(`{"claim_id": "PAY-0001", "lines": [` + line + "," + line + "," + line + "," + line + `]}`)
	rules := claim.DefaultRules()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		in, err := claim.DecodeJSON(bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		lines, err := claim.Parse(in, rules)
		if err != nil {
			b.Fatal(err)
		}
		c := claim.Claim{ExternalID: in.ExternalIDText(), Lines: lines}
		_ = c.Fingerprint()
	}
}
