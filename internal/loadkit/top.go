package loadkit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// TopListMax is the longest /top-providers list claimd answers (limit=100).
const TopListMax = 100

// ProviderTotal is one entry of a ranking.
type ProviderTotal struct {
	NPI   string
	Cents int64
}

func (p ProviderTotal) String() string { return p.NPI + "=" + FormatCents(p.Cents) }

// StatusError is an answer with another status than the one expected.
type StatusError struct {
	Code int
	Body []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("answered %d: %s", e.Code, Snippet(e.Body))
}

// GetTop reads /top-providers?limit=n from base: the list and the source it
// came from ("redis" or "postgres"). Another status than 200 is a
// *StatusError. apiKey, when not "", is sent as a bearer key.
func GetTop(ctx context.Context, client *http.Client, base, apiKey string, n int) ([]ProviderTotal, string, error) {
	return GetBoardTop(ctx, client, base, apiKey, "", n)
}

// GetBoardTop is GetTop of the board that query names ("window=year&period=2025"; "" all time).
func GetBoardTop(ctx context.Context, client *http.Client, base, apiKey, query string, n int) ([]ProviderTotal, string, error) {
	if query != "" {
		query = "&" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/top-providers?limit=%d%s", base, n, query), nil)
	if err != nil {
		return nil, "", err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", &StatusError{Code: resp.StatusCode, Body: body}
	}
	return ParseTop(body)
}

// ParseTop reads a /top-providers answer. Every total must be written as
// the API writes money: a JSON number with exactly two decimals.
func ParseTop(body []byte) ([]ProviderTotal, string, error) {
	var a struct {
		TopProviders []struct {
			NPI   string      `json:"provider_npi"`
			Total json.Number `json:"total_net_fee"`
		} `json:"top_providers"`
		Source string `json:"source"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return nil, "", fmt.Errorf("decode %s: %w", Snippet(body), err)
	}
	out := make([]ProviderTotal, len(a.TopProviders))
	for i, p := range a.TopProviders {
		c, err := ParseExactCents(p.Total.String())
		if err != nil {
			return nil, "", fmt.Errorf("total_net_fee of %s: %w", p.NPI, err)
		}
		out[i] = ProviderTotal{NPI: p.NPI, Cents: c}
	}
	if a.Source == "" {
		return nil, "", errors.New("answer has no source")
	}
	return out, a.Source, nil
}

// TopN ranks totals as the API must: highest first, ties by NPI descending
// (byte order, as Redis orders equal scores), at most n.
func TopN(totals map[string]int64, n int) []ProviderTotal {
	out := make([]ProviderTotal, 0, len(totals))
	for npi, cents := range totals {
		out = append(out, ProviderTotal{npi, cents})
	}
	slices.SortFunc(out, func(a, b ProviderTotal) int {
		if c := cmp.Compare(b.Cents, a.Cents); c != 0 {
			return c
		}
		return strings.Compare(b.NPI, a.NPI)
	})
	return out[:min(n, len(out))]
}

// Snippet is the start of an answer's body, for an error message.
func Snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
