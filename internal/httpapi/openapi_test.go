package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/claim-process/claim-process/internal/httpapi"
	"github.com/claim-process/claim-process/internal/testenv"
)

// The service's text bodies are checked by the service (400 and 422), not
// here: the description only says they are text. kin-openapi's own CSV
// decoder is stricter than the service's (a BOM, blank lines), and it knows
// no decoder for application/csv or NDJSON.
func init() {
	for _, ct := range []string{"text/csv", "application/csv", "application/x-ndjson"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// specFile is the description, read from the source tree as the binary embeds it.
const specFile = "openapi.yaml"

type openAPISpec struct {
	doc    *openapi3.T
	router routers.Router
}

// loadSpec loads and validates the description once for the whole package.
var loadSpec = sync.OnceValues(func() (openAPISpec, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(specFile)
	if err != nil {
		return openAPISpec{}, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return openAPISpec{}, err
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return openAPISpec{}, err
	}
	return openAPISpec{doc: doc, router: router}, nil
})

func mustSpec(tb testing.TB) openAPISpec {
	tb.Helper()
	spec, err := loadSpec()
	require.NoError(tb, err, "%s does not load or validate", specFile)
	return spec
}

// mustMatchSpec holds one exchange with the service to the description: the
// answer must be one the operation describes (status, headers, content type,
// body), and a request the service accepted (2xx) must be one it describes.
// reqBody nil skips the request's body: the caller could not keep it. Every
// request helper of this package's tests calls it.
func mustMatchSpec(tb testing.TB, req *http.Request, reqBody []byte, res response) {
	tb.Helper()
	spec := mustSpec(tb)
	ctx := context.Background()

	// What the router serves with its StripSlashes: "/claims/" is "/claims".
	r := req.Clone(ctx)
	if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
		r.URL.Path, r.URL.RawPath = strings.TrimRight(p, "/"), ""
	}
	if reqBody != nil {
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
	} else {
		r.Body = http.NoBody
	}

	route, params, err := spec.router.FindRoute(r)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		require.Equal(tb, http.StatusNotFound, res.status, "%s %s is not described, but answered", req.Method, req.URL.Path)
		mustBeRouterAnswer(tb, spec, "NotFound", res)
		return
	case errors.Is(err, routers.ErrMethodNotAllowed):
		require.Equal(tb, http.StatusMethodNotAllowed, res.status, "%s %s is not described, but answered", req.Method, req.URL.Path)
		mustBeRouterAnswer(tb, spec, "MethodNotAllowed", res)
		return
	}
	require.NoError(tb, err, "%s %s", req.Method, req.URL.Path)

	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true, // a status the operation does not list fails
		SkipSettingDefaults:   true,
		MultiError:            true,
	}
	if res.status == http.StatusUnauthorized {
		// Swagger UI sends the key only to operations that list it.
		require.NotNil(tb, route.Operation.Security, "%s %s answered 401, so its security must list apiKey", req.Method, req.URL.Path)
		require.True(tb, slices.ContainsFunc(*route.Operation.Security, func(s openapi3.SecurityRequirement) bool {
			_, ok := s["apiKey"]
			return ok
		}), "%s %s answered 401, so its security must list apiKey", req.Method, req.URL.Path)
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	if accepted(res) {
		reqOpts := *opts
		reqOpts.ExcludeRequestBody = reqBody == nil
		in.Options = &reqOpts
		require.NoError(tb, openapi3filter.ValidateRequest(ctx, in),
			"%s %s was accepted (%d) but is not a request the description allows", req.Method, req.URL.Path, res.status)
		in.Options = opts
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.status,
		Header:                 res.header,
		Body:                   io.NopCloser(bytes.NewReader(res.body)),
		Options:                opts,
	}
	require.NoError(tb, openapi3filter.ValidateResponse(ctx, out),
		"%s %s answered %d, which the description does not allow:\n%.2000s", req.Method, req.URL.Path, res.status, res.body)
}

// accepted tells whether the service took the request as valid: a 2xx, and
// for a batch (answered 200 whatever its claims were) every claim stored and
// the body read to its end.
func accepted(res response) bool {
	if res.status < 200 || res.status > 299 {
		return false
	}
	var batch struct {
		Refused, Failed *int
		Complete        *bool
	}
	if json.Unmarshal(res.body, &batch) == nil && batch.Complete != nil && batch.Refused != nil && batch.Failed != nil {
		return *batch.Complete && *batch.Refused == 0 && *batch.Failed == 0
	}
	return true
}

// mustBeRouterAnswer checks an answer the router gives outside any
// operation (404, 405) against the response of that name under components:
// its required headers, its content type and body schema.
func mustBeRouterAnswer(tb testing.TB, spec openAPISpec, name string, res response) {
	tb.Helper()
	ref := spec.doc.Components.Responses[name]
	require.NotNil(tb, ref, "components.responses.%s", name)
	for h, header := range ref.Value.Headers {
		if header.Value.Required {
			require.NotEmpty(tb, res.header.Get(h), "a %s answer has the header %s", name, h)
		}
	}
	mt := ref.Value.Content.Get(res.header.Get("Content-Type"))
	require.NotNil(tb, mt, "a %s answer has a content type the description gives: %q", name, res.header.Get("Content-Type"))
	var v any
	require.NoError(tb, json.Unmarshal(res.body, &v))
	require.NoError(tb, mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()), "%s", res.body)
}

func TestOpenAPIDescriptionIsValid(t *testing.T) {
	t.Parallel()
	spec := mustSpec(t) // loaded, validated, examples included, and routed
	require.True(t, spec.doc.IsOpenAPI31OrLater(), "OpenAPI %s", spec.doc.OpenAPI)
	require.Equal(t, "3.1.0", spec.doc.OpenAPI)
	require.Len(t, spec.doc.Servers, 1)
	require.Equal(t, "/", spec.doc.Servers[0].URL, "relative, so Try it out calls the host that serves /docs")
}

// minimalDeps is enough to build the router without serving claims.
func minimalDeps(tb testing.TB) httpapi.Deps {
	return httpapi.Deps{Registry: prometheus.NewRegistry(), Log: testenv.Logger(tb)}
}

// TestOpenAPIDescribesEveryRoute: every route the router serves is in the
// description with the same method, and every described operation is served.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	spec := mustSpec(t)
	routes, ok := httpapi.NewServer(minimalDeps(t)).(chi.Routes)
	require.True(t, ok, "NewServer returns the chi router")

	// "{id}" and "{asset}" are one shape; chi's catch-all "*" is one path segment here.
	param := regexp.MustCompile(`\{[^}]*\}|\*$`)
	shape := func(method, path string) string { return method + " " + param.ReplaceAllString(path, "{}") }

	var served []string
	require.NoError(t, chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, shape(method, route))
		return nil
	}))
	var described []string
	for path, item := range spec.doc.Paths.Map() {
		for method := range item.Operations() {
			described = append(described, shape(method, path))
		}
	}
	slices.Sort(served)
	slices.Sort(described)
	served, described = slices.Compact(served), slices.Compact(described)
	require.ElementsMatch(t, served, described, "routes served (first) and described (second) differ")
	require.Contains(t, served, "POST /claims", "sanity: the walk saw the routes")
}

func TestOpenAPIServedAsYAMLAndJSON(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-docs"}}) // needs no key all the same
	source, err := os.ReadFile(specFile)
	require.NoError(t, err)

	y := mustDo(t, http.MethodGet, s.url+"/openapi.yaml", "", nil)
	require.Equal(t, http.StatusOK, y.status)
	require.Equal(t, "application/yaml", y.header.Get("Content-Type"))
	require.Equal(t, string(source), string(y.body), "served as is")

	j := mustDo(t, http.MethodGet, s.url+"/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, j.status)
	require.Equal(t, "application/json", j.header.Get("Content-Type"))
	var fromJSON, fromYAML any
	require.NoError(t, json.Unmarshal(j.body, &fromJSON))
	require.NoError(t, yaml.Unmarshal(source, &fromYAML))
	yamlAsJSON, err := json.Marshal(fromYAML)
	require.NoError(t, err)
	require.JSONEq(t, string(yamlAsJSON), string(j.body), "the JSON is the YAML")

	// Order is kept: Swagger UI offers the first content type, the JSON form,
	// with the sample as its example.
	require.Contains(t, string(j.body), `"requestBody":{"required":true,"content":{"application/json":{"schema":{"$ref":"#/components/schemas/ClaimInput"},"examples":{"sample":`)
	require.Contains(t, string(j.body), `"total_net_fee":955.00`, "money examples keep their two decimals")
	require.Less(t, strings.Index(string(j.body), `"/claims"`), strings.Index(string(j.body), `"/healthz"`))

	doc, err := openapi3.NewLoader().LoadFromData(j.body)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "the JSON form validates too")
}

// TestOpenAPIWithoutKeysHasNoLocks: without API keys nothing needs one, so
// the description served has no security requirements and no apiKey scheme
// (Swagger UI would show a lock on every operation that lists one); it is
// otherwise openapi.yaml, in both forms. With keys it lists them (above).
func TestOpenAPIWithoutKeysHasNoLocks(t *testing.T) {
	t.Parallel()
	s := mustStack(t, redis_rate.Limit{})
	source, err := os.ReadFile(specFile)
	require.NoError(t, err)
	var want map[string]any
	require.NoError(t, yaml.Unmarshal(source, &want))
	delete(want, "security")
	for _, item := range want["paths"].(map[string]any) {
		for _, op := range item.(map[string]any) {
			if op, ok := op.(map[string]any); ok {
				delete(op, "security")
			}
		}
	}
	delete(want["components"].(map[string]any), "securitySchemes")
	wantJSON, err := json.Marshal(want)
	require.NoError(t, err)
	require.Contains(t, string(source), "securitySchemes:", "sanity: the source has them")

	for _, path := range []string{"/openapi.json", "/openapi.yaml"} {
		res := mustDo(t, http.MethodGet, s.url+path, "", nil)
		require.Equal(t, http.StatusOK, res.status, path)
		var served any
		require.NoError(t, yaml.Unmarshal(res.body, &served), path) // JSON is YAML too
		servedJSON, err := json.Marshal(served)
		require.NoError(t, err)
		require.JSONEq(t, string(wantJSON), string(servedJSON), "%s is openapi.yaml without its security", path)
		require.NotContains(t, string(res.body), "security", "%s: no security requirement, no scheme: no lock in Swagger UI", path)

		doc, err := openapi3.NewLoader().LoadFromData(res.body)
		require.NoError(t, err, path)
		require.NoError(t, doc.Validate(context.Background()), "%s validates", path)
		require.Nil(t, doc.Security, path)
		for p, item := range doc.Paths.Map() {
			for m, op := range item.Operations() {
				require.Nil(t, op.Security, "%s: %s %s lists security", path, m, p)
			}
		}
	}
	j := mustDo(t, http.MethodGet, s.url+"/openapi.json", "", nil)
	require.Contains(t, string(j.body), `"total_net_fee":955.00`, "money examples keep their two decimals")
	require.Less(t, strings.Index(string(j.body), `"/claims"`), strings.Index(string(j.body), `"/healthz"`), "order is kept")
}

// TestOpenAPIClaimInputForms: a claim's schema is its named forms, each a
// component of its own, so Swagger UI lists them by name.
func TestOpenAPIClaimInputForms(t *testing.T) {
	t.Parallel()
	spec := mustSpec(t)
	schemas := spec.doc.Components.Schemas
	var forms []string
	for _, f := range schemas["ClaimInput"].Value.AnyOf {
		forms = append(forms, f.Ref)
	}
	require.Equal(t, []string{"#/components/schemas/ClaimWithLines", "#/components/schemas/ClaimLines", "#/components/schemas/ClaimLine"}, forms,
		"ClaimInput is any of the three JSON forms, by name")
	for _, name := range []string{"ClaimWithLines", "ClaimLines", "ClaimLine", "ClaimCSV"} {
		require.NotEmpty(t, schemas[name].Value.Title, "%s has a title Swagger UI shows", name)
	}
	require.True(t, schemas["ClaimWithLines"].Value.Type.Is("object"))
	require.True(t, schemas["ClaimLines"].Value.Type.Is("array"))
	require.True(t, schemas["ClaimLine"].Value.Type.Is("object"))
	require.True(t, schemas["ClaimCSV"].Value.Type.Is("string"))

	content := spec.doc.Paths.Value("/claims").Post.RequestBody.Value.Content
	require.Equal(t, "#/components/schemas/ClaimInput", content.Get("application/json").Schema.Ref)
	for _, ct := range []string{"text/csv", "application/csv"} {
		require.Equal(t, "#/components/schemas/ClaimCSV", content.Get(ct).Schema.Ref, ct)
	}
}

// The examples of POST /claims are the sample claim: posted as they are, as
// Swagger UI's Try it out posts them, they are stored with net fee 2320.00.
func TestOpenAPIClaimExamplesAreTheSample(t *testing.T) {
	t.Parallel()
	spec := mustSpec(t)
	s := mustStack(t, redis_rate.Limit{})
	content := spec.doc.Paths.Value("/claims").Post.RequestBody.Value.Content

	csvExample, ok := content.Get("text/csv").Example.(string)
	require.True(t, ok)
	require.Equal(t, string(mustSample(t)), csvExample, "the CSV example is claim_1234.csv")

	jsonExample, err := json.Marshal(content.Get("application/json").Examples["sample"].Value.Value)
	require.NoError(t, err)
	fromJSON := mustPost(t, s.url+"/claims", "application/json", string(jsonExample))
	require.Equal(t, http.StatusCreated, fromJSON.status, string(fromJSON.body))
	require.Contains(t, string(fromJSON.body), `"net_fee":2320.00,`)

	fromCSV := mustPost(t, s.url+"/claims", "text/csv", csvExample)
	require.Equal(t, http.StatusCreated, fromCSV.status, string(fromCSV.body))
	require.Equal(t, fromCSV.json(t)["lines"], fromJSON.json(t)["lines"], "the JSON example is the same claim")

	// Every example, one after another, with the header values Swagger UI
	// fills in on Try it out (a parameter's example): each must be taken.
	// A fixed Idempotency-Key example, say, would refuse the second.
	header := map[string]string{"Content-Type": "application/json"}
	for _, p := range spec.doc.Paths.Value("/claims").Post.Parameters {
		if p.Value.In == "header" && p.Value.Example != nil {
			header[p.Value.Name] = fmt.Sprint(p.Value.Example)
		}
		for _, ex := range p.Value.Examples {
			if p.Value.In == "header" && ex.Value.Value != nil {
				header[p.Value.Name] = fmt.Sprint(ex.Value.Value)
			}
		}
		if p.Value.In == "header" && p.Value.Schema != nil {
			for _, v := range []any{p.Value.Schema.Value.Example, p.Value.Schema.Value.Default} {
				if v != nil {
					header[p.Value.Name] = fmt.Sprint(v)
				}
			}
		}
	}
	for name, ex := range content.Get("application/json").Examples {
		body, err := json.Marshal(ex.Value.Value)
		require.NoError(t, err)
		res := mustDoWith(t, http.MethodPost, s.url+"/claims", header, bytes.NewReader(body))
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, res.status, "example %s sent with %v: %s", name, header, res.body)
	}
	batch := spec.doc.Paths.Value("/claims/batch").Post.RequestBody.Value.Content
	for _, ct := range []string{"application/json", "application/x-ndjson"} {
		body := batch.Get(ct).Example
		if ct == "application/json" {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			body = string(b)
		}
		a := mustBatch(t, mustDoWith(t, http.MethodPost, s.url+"/claims/batch", map[string]string{"Content-Type": ct}, strings.NewReader(body.(string))))
		require.Equal(t, 2, a.Created+a.Existing, "%s example: %+v", ct, a)
	}
}

// TestDocsServesSwaggerUIOffline: /docs is Swagger UI for /openapi.json,
// every asset it loads comes from this server (nothing from a CDN), no
// route needs an API key, and the metrics label the assets by pattern.
func TestDocsServesSwaggerUIOffline(t *testing.T) {
	t.Parallel()
	s := mustStackWith(t, stackOptions{apiKeys: []string{"k-docs"}})
	for _, path := range []string{"/docs", "/docs/"} {
		page := mustDo(t, http.MethodGet, s.url+path, "", nil)
		require.Equal(t, http.StatusOK, page.status, path)
		require.Contains(t, page.header.Get("Content-Type"), "text/html")
		html := string(page.body)
		require.Contains(t, html, "<title>claimd API - Swagger UI</title>")
		require.Contains(t, html, `url: "/openapi.json"`)
		require.NotRegexp(t, `(?i)(src|href)\s*=\s*["']?(https?:)?//`, html, "nothing is loaded from another host")
		require.Contains(t, html, "validatorUrl: null", "no call to the online validator")
		require.NotContains(t, html, "requestInterceptor", "requests go to the service itself, through no proxy")

		assets := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(html, -1)
		require.Len(t, assets, 6, "the style sheet, two icons, three scripts: %v", assets)
		for _, a := range assets {
			require.True(t, strings.HasPrefix(a[1], "/docs/"), a[1])
			res := mustDo(t, http.MethodGet, s.url+a[1], "", nil)
			require.Equal(t, http.StatusOK, res.status, a[1])
			require.Greater(t, len(res.body), 100, a[1])
		}
	}
	require.Equal(t, http.StatusNotFound, mustDo(t, http.MethodGet, s.url+"/docs/nothing.js", "", nil).status)

	metrics := string(mustDo(t, http.MethodGet, s.url+"/metrics", "", nil).body)
	require.Contains(t, metrics, `claimd_http_requests_total{code="200",method="GET",route="/docs/*"} 12`)
	require.Contains(t, metrics, `claimd_http_requests_total{code="200",method="GET",route="/docs"} 2`)
	require.NotContains(t, metrics, "swagger-ui-bundle", "no raw asset paths as labels")
}
