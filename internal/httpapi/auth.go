package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// APIKeys are the bearer tokens clients may present. With none configured
// every request is anonymous and nothing requires a key.
type APIKeys struct {
	digests [][sha256.Size]byte
}

// NewAPIKeys returns the set of keys; blank entries are ignored.
func NewAPIKeys(keys []string) *APIKeys {
	a := &APIKeys{}
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			a.digests = append(a.digests, sha256.Sum256([]byte(k)))
		}
	}
	return a
}

func (a *APIKeys) enabled() bool { return a != nil && len(a.digests) > 0 }

// match returns the client id of a presented key, comparing digests in
// constant time against every configured key. The id is derived from the
// key's digest, so logs and metrics never see the key itself.
func (a *APIKeys) match(presented string) (string, bool) {
	d := sha256.Sum256([]byte(presented))
	found := 0
	for _, k := range a.digests {
		found |= subtle.ConstantTimeCompare(d[:], k[:])
	}
	if found == 0 {
		return "", false
	}
	return "key:" + hex.EncodeToString(d[:6]), true
}

// client names which client sent the request: the API key's id when a
// valid one is presented, else the connecting address. Rate limits,
// idempotency keys and claims are scoped by it; tagRequest records it.
func (a *APIKeys) client(r *http.Request) string {
	if a.enabled() {
		if token, ok := bearer(r); ok {
			if id, ok := a.match(token); ok {
				return id
			}
		}
	}
	return "addr:" + clientAddr(r)
}

// require refuses requests without a valid key when keys are configured.
func (a *APIKeys) require(next http.Handler) http.Handler {
	if !a.enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(clientOf(r), "key:") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="claimd"`)
			writeProblem(w, problemFor(http.StatusUnauthorized, "send a valid API key as Authorization: Bearer <key>"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// clientOf is the client tagRequest recorded.
func clientOf(r *http.Request) string {
	if t, ok := r.Context().Value(requestTagKey{}).(*requestTag); ok {
		return t.client
	}
	return "addr:" + clientAddr(r)
}

// allowReads refuses claim reads when no API keys are configured, unless
// the operator allowed anonymous reads: a claim holds subscriber numbers,
// and without keys anyone who reaches the port could read every claim.
func (a *APIKeys) allowReads(anonymous bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a.enabled() || anonymous {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeProblem(w, problemFor(http.StatusForbidden,
				"reading claims needs API keys (API_KEYS), or ALLOW_ANONYMOUS_READS=true where anyone who can reach the service may read every claim"))
		})
	}
}

// ownerScope is the client a claim, its status and its idempotency keys
// belong to: the API key's client when keys are configured; otherwise one
// client for all (a payment service's retries may come from another
// address than the first try).
func ownerScope(r *http.Request, keys *APIKeys) string {
	if keys.enabled() {
		return clientOf(r)
	}
	return ""
}
