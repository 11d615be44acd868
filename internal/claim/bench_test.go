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
