package httpapi

import (
	"cmp"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBodyBytes bounds a claim body.
const maxBodyBytes = 1 << 20

// requestTimeout bounds the work of one request.
const requestTimeout = 10 * time.Second

// routes lists every route the service serves.
func routes(d Deps, m *metrics) http.Handler {
	r := chi.NewRouter()
	r.Use(
		tagRequest(d.APIKeys),
		middleware.StripSlashes, // "/claims/" is "/claims", "/top-providers/" is "/top-providers"
		instrument(m, d.Log, cmp.Or(d.LookupLogSample, DefaultLookupLogSample)),
		recoverPanics(d.Log),
	)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, problemFor(http.StatusNotFound, "no such route"))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, problemFor(http.StatusMethodNotAllowed, req.Method+" is not allowed here"))
	})

	r.Get("/healthz", handleHealthz())
	r.Get("/readyz", handleReadyz(Readiness(d)))
	if !d.MetricsElsewhere {
		r.Method(http.MethodGet, "/metrics", MetricsHandler(d.Registry))
	}

	// The description and Swagger UI, open to all like the lookups.
	r.Get("/openapi.yaml", handleOpenAPIYAML(d.APIKeys))
	r.Get("/openapi.json", handleOpenAPIJSON(d.APIKeys))
	docs := handleDocs()
	r.Method(http.MethodGet, docsPath, docs)
	r.Method(http.MethodGet, docsPath+"/*", docs) // its assets, one route pattern for all

	// Claims carry subscriber numbers: no answer about one is kept by a cache.
	r.With(deadline(d.BatchTimeout), noStore, d.APIKeys.require).Post("/claims/batch", handlePostBatch(d))
	r.Group(func(r chi.Router) {
		r.Use(deadline(requestTimeout))
		r.With(noStore, d.APIKeys.require).Post("/claims", handlePostClaim(d))
		r.With(noStore, d.APIKeys.require, d.APIKeys.allowReads(d.AllowAnonymousReads)).
			Get("/claims", handleFindClaims(d))
		r.With(noStore, d.APIKeys.require, d.APIKeys.allowReads(d.AllowAnonymousReads)).
			Get("/claims/{id}", handleGetClaim(d))
		r.With(noStore, d.APIKeys.require, d.APIKeys.allowReads(d.AllowAnonymousReads)).
			Post("/claims/{id}/reversal", handleReverseClaim(d))
	})
	// A lookup's reads carry their own deadlines (Redis's short one, then
	// Postgres's): no request-wide timer is needed on the busiest route.
	r.With(d.RateLimiter.middleware(m, "top-providers", d.Log)).
		Get("/top-providers", handleTopProviders(d))
	r.With(d.RateLimiter.middleware(m, "providers", d.Log)).
		Get("/providers/{npi}", handleProvider(d))
	return r
}

// MetricsHandler serves the registry's metrics, at /metrics here or on the
// operator's METRICS_ADDR.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// noStore keeps caches from storing the answer.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
