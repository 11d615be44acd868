package loadkit

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"time"
)

// Line is one generated claim line. Money is integer cents: the tool never
// does arithmetic on floats for amounts it sends or checks.
type Line struct {
	ServiceDate string // YYYY-MM-DD
	Procedure   string
	Quadrant    string // "" is sent as null
	PlanGroup   string
	Subscriber  string
	NPI         string
	Fees        int64 // provider fees
	Allowed     int64 // allowed fees, never above Fees
	Coinsurance int64
	Copay       int64
}

// NetFee is the line's net fee as the service defines it, computed here
// independently of the server so the two can be compared.
func (l Line) NetFee() int64 { return l.Fees + l.Coinsurance + l.Copay - l.Allowed }

// Claim is one generated claim with its sender-side identifier.
type Claim struct {
	ExternalID string
	Lines      []Line
}

// NetFee is the sum of the lines' net fees.
func (c *Claim) NetFee() int64 {
	var sum int64
	for _, l := range c.Lines {
		sum += l.NetFee()
	}
	return sum
}

// WireLine is the JSON form of a line, with its amounts of type M: string
// in a request body ("123.45", so that no float ever stands between the
// sender's cents and the server's), json.Number when reading an answer.
type WireLine[M any] struct {
	ServiceDate        string  `json:"service_date"`
	SubmittedProcedure string  `json:"submitted_procedure"`
	Quadrant           *string `json:"quadrant"`
	PlanGroup          string  `json:"plan_group"`
	Subscriber         string  `json:"subscriber"`
	ProviderNPI        string  `json:"provider_npi"`
	ProviderFees       M       `json:"provider_fees"`
	AllowedFees        M       `json:"allowed_fees"`
	MemberCoinsurance  M       `json:"member_coinsurance"`
	MemberCopay        M       `json:"member_copay"`
}

type wireClaim struct {
	ClaimID string             `json:"claim_id"`
	Lines   []WireLine[string] `json:"lines"`
}

// JSON is the body of POST /claims for this claim: json.Marshal of its
// wire form, written by hand when its text needs no escaping (always, for
// generated claims), since the generator builds one per request.
func (c *Claim) JSON() []byte {
	if b, ok := c.appendJSON(make([]byte, 0, 160+240*len(c.Lines))); ok {
		return b
	}
	return c.marshalJSON()
}

func (c *Claim) marshalJSON() []byte {
	w := wireClaim{ClaimID: c.ExternalID, Lines: make([]WireLine[string], len(c.Lines))}
	for i, l := range c.Lines {
		var q *string
		if l.Quadrant != "" {
			q = &l.Quadrant
		}
		w.Lines[i] = WireLine[string]{
			ServiceDate: l.ServiceDate, SubmittedProcedure: l.Procedure, Quadrant: q,
			PlanGroup: l.PlanGroup, Subscriber: l.Subscriber, ProviderNPI: l.NPI,
			ProviderFees: FormatCents(l.Fees), AllowedFees: FormatCents(l.Allowed),
			MemberCoinsurance: FormatCents(l.Coinsurance), MemberCopay: FormatCents(l.Copay),
		}
	}
	b, err := json.Marshal(w)
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return b
}

// appendJSON appends what marshalJSON returns; ok is false when some text
// would need escaping.
func (c *Claim) appendJSON(b []byte) (_ []byte, ok bool) {
	ok = true
	str := func(s string) {
		ok = ok && PlainJSON(s)
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	b = append(b, `{"claim_id":`...)
	str(c.ExternalID)
	b = append(b, `,"lines":[`...)
	for i, l := range c.Lines {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"service_date":`...)
		str(l.ServiceDate)
		b = append(b, `,"submitted_procedure":`...)
		str(l.Procedure)
		b = append(b, `,"quadrant":`...)
		if l.Quadrant == "" {
			b = append(b, "null"...)
		} else {
			str(l.Quadrant)
		}
		b = append(b, `,"plan_group":`...)
		str(l.PlanGroup)
		b = append(b, `,"subscriber":`...)
		str(l.Subscriber)
		b = append(b, `,"provider_npi":`...)
		str(l.NPI)
		for _, m := range [...]struct {
			name  string
			cents int64
		}{{`,"provider_fees":`, l.Fees}, {`,"allowed_fees":`, l.Allowed}, {`,"member_coinsurance":`, l.Coinsurance}, {`,"member_copay":`, l.Copay}} {
			b = append(b, m.name...)
			str(FormatCents(m.cents))
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), ok
}

// Fee bounds: real dental fees run from a $20 exam add-on to a $5,000 implant.
const (
	MinFeeCents = 20_00
	MaxFeeCents = 5_000_00
)

// procedures are common CDT codes; the service only requires the "D".
var procedures = []string{
	"D0120", "D0140", "D0150", "D0180", "D0210", "D0220", "D0274", "D0330",
	"D1110", "D1120", "D1206", "D1351", "D2140", "D2150", "D2330", "D2391",
	"D2392", "D2740", "D2750", "D2950", "D3310", "D3330", "D4341", "D4342",
	"D4910", "D5110", "D6010", "D6058", "D7140", "D7210", "D7240", "D9110",
}

var quadrants = []string{"UR", "UL", "LR", "LL"}

var copays = []int64{5_00, 10_00, 15_00, 25_00, 50_00}

// epoch anchors service dates so a seed reproduces the same claims on any day.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Generator makes claims. It is not safe for concurrent use: each load worker
// owns one, seeded from the run's seed, so a run is reproducible.
type Generator struct {
	rng     *rand.Rand
	zipf    *rand.Zipf
	npis    []string // index 0 is the most frequently drawn provider
	maxLine int
	fixed   int  // when above 0, every claim has exactly this many lines
	uniform bool // providers drawn with equal chances instead of Zipf
}

// FixLines makes every claim n lines long (n <= 0: 1 to maxLines, drawn).
func (g *Generator) FixLines(n int) { g.fixed = n }

// Uniform draws every provider with the same chance instead of from the
// Zipf distribution: a small pool is then spread evenly, with no hot row.
func (g *Generator) Uniform() { g.uniform = true }

// Float64 draws a number in [0, 1) from the generator's own source, for a
// load's other choices, so that they too follow from the seed.
func (g *Generator) Float64() float64 { return g.rng.Float64() }

// NewGenerator returns a generator drawing providers from npis with a Zipf
// distribution of exponent s (> 1; larger is more skewed).
func NewGenerator(seed int64, npis []string, s float64, maxLines int) *Generator {
	rng := rand.New(rand.NewSource(seed))
	return &Generator{
		rng:     rng,
		zipf:    rand.NewZipf(rng, s, 1, uint64(len(npis)-1)),
		npis:    npis,
		maxLine: maxLines,
	}
}

// NPIPool returns n distinct NPIs, all with a valid check digit so the pool
// also passes claimd's VALIDATE_NPI_CHECKSUM=true. They are deterministic, so
// successive runs (and the database baseline) talk about the same providers.
func NPIPool(n int) []string {
	out := make([]string, n)
	for i := range out {
		base := fmt.Sprintf("1%08d", 90_000_000+i) // a corner unlikely to hold real sample NPIs
		out[i] = base + strconv.Itoa(npiCheckDigit(base))
	}
	return out
}

// npiCheckDigit is the Luhn check digit of "80840"+base, as CMS defines it.
func npiCheckDigit(base string) int {
	digits := "80840" + base
	sum := 0
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if (len(digits)-1-i)%2 == 0 { // rightmost payload digit is doubled: the check digit will follow it
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return (10 - sum%10) % 10
}

// NPIIndex draws a provider index from the Zipf distribution (or
// uniformly, see Uniform).
func (g *Generator) NPIIndex() int {
	if g.uniform {
		return g.rng.Intn(len(g.npis))
	}
	return int(g.zipf.Uint64())
}

// NPI draws a provider as NPIIndex does.
func (g *Generator) NPI() string { return g.npis[g.NPIIndex()] }

// Claim makes one claim of 1..maxLines lines (or the fixed count) with the given identifier. One
// claim stays with one subscriber and plan, and mostly one provider, as real
// claims do; now and then a line is billed by another provider.
func (g *Generator) Claim(externalID string) *Claim {
	r := g.rng
	n := 1 + r.Intn(g.maxLine)
	if g.fixed > 0 {
		n = g.fixed
	}
	subscriber := zeroPadded(r.Int63n(10_000_000_000), 10)
	plan := "GRP-" + zeroPadded(int64(r.Intn(10_000)), 4)
	date := epoch.AddDate(0, 0, r.Intn(365)).Format(time.DateOnly)
	npi := g.npis[g.NPIIndex()]
	c := &Claim{ExternalID: externalID, Lines: make([]Line, n)}
	for i := range c.Lines {
		lineNPI := npi
		if r.Intn(10) == 0 {
			lineNPI = g.npis[g.NPIIndex()]
		}
		l := Line{
			ServiceDate: date,
			Procedure:   procedures[r.Intn(len(procedures))],
			PlanGroup:   plan,
			Subscriber:  subscriber,
			NPI:         lineNPI,
		}
		if r.Intn(5) < 2 {
			l.Quadrant = quadrants[r.Intn(len(quadrants))]
		}
		l.Fees, l.Allowed, l.Coinsurance, l.Copay = g.money()
		c.Lines[i] = l
	}
	return c
}

// money draws one line's amounts in cents. Fees are lognormal (median about
// $180, a long tail to implants and crowns) clamped to $20..$5,000, mostly
// whole dollars as fee schedules are. The plan allows 40–100% of the fee;
// the member pays a small coinsurance share and sometimes a flat copay.
func (g *Generator) money() (fees, allowed, coins, copay int64) {
	r := g.rng
	// A float only chooses the fee; from here on it is integer cents.
	dollars := math.Exp(math.Log(180) + 0.9*r.NormFloat64())
	fees = int64(math.Round(dollars * 100))
	if r.Intn(10) < 7 {
		fees = fees / 100 * 100
	}
	fees = min(max(fees, MinFeeCents), MaxFeeCents)
	allowed = fees * int64(4000+r.Intn(6001)) / 10000 // 40.00%..100.00%, rounded down: ≤ fees
	switch r.Intn(4) {
	case 0:
		coins = allowed / 10
	case 1:
		coins = allowed / 5
	}
	if r.Intn(5) < 2 {
		copay = copays[r.Intn(len(copays))]
	}
	return fees, allowed, coins, copay
}

// zeroPadded is fmt.Sprintf("%0*d", width, n) for n >= 0, without fmt.
func zeroPadded(n int64, width int) string {
	var buf [20]byte
	d := strconv.AppendInt(buf[:0], n, 10)
	if len(d) >= width {
		return string(d)
	}
	out := make([]byte, width)
	for i := range width - len(d) {
		out[i] = '0'
	}
	copy(out[width-len(d):], d)
	return string(out)
}

// PlainJSON says whether JSON encoders write s as it is between quotes:
// printable ASCII without '"' or '\\', nor the <, > and & json.Marshal
// escapes. The generator's text always is.
func PlainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
