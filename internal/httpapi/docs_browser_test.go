package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-redis/redis_rate/v10"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/testenv"
)

// TestDocsTryItOut is what a developer of the payment service does first:
// open /docs in a browser, expand POST /claims, press "Try it out", execute
// the example (the sample claim) and read the answer on the page. It drives
// Debian's chromium, headless, against the real router, and checks that the
// page fetched nothing from anywhere but the service itself.
func TestDocsTryItOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	chromium := testenv.Tool(t, "chromium", "Debian package chromium")
	s := mustStack(t, redis_rate.Limit{})
	page := openBrowser(t, chromium)

	// The POST /claims block: Swagger UI names it by tag and operationId.
	const op = `#operations-claims-postClaim`
	const answer = op + ` .live-responses-table tbody .response`
	require.NoError(t, chromedp.Do(page,
		chromedp.Navigate(s.url+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(op+` .opblock-summary`)),
		chromedp.Click(chromedp.CSS(op+` .opblock-summary`)),
		chromedp.WaitVisible(chromedp.CSS(op+` .try-out__btn`)),
		chromedp.Click(chromedp.CSS(op+` .try-out__btn`)),
		chromedp.WaitVisible(chromedp.CSS(op+` button.execute`)),
		chromedp.Click(chromedp.CSS(op+` button.execute`)),
		chromedp.WaitVisible(chromedp.CSS(answer+` .response-col_status`)),
	), "Swagger UI did not show a response to POST /claims")

	// No API keys here, so nothing needs one: no lock on any operation and
	// no Authorize button.
	locks, err := chromedp.Run(page, chromedp.Evaluate[int](`document.querySelectorAll(".authorization__btn, .btn.authorize").length`))
	require.NoError(t, err)
	require.Zero(t, locks, "Swagger UI shows lock icons, though no API keys are configured")

	// The schemas read as what they are, ClaimInput as its three forms: no
	// type labelled "any" (Swagger UI's label for a $ref not resolved yet).
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		labels, err := chromedp.Run(page, chromedp.Evaluate[[]string](
			`Array.from(document.querySelectorAll(".models .json-schema-2020-12__attribute--primary"), e => e.innerText)`))
		require.NoError(c, err)
		require.Contains(c, labels, "(object | array<object> | object)", "ClaimInput")
		for _, l := range labels {
			require.NotContains(c, l, "any", "the types Swagger UI shows in Schemas: %q", labels)
		}
	}, 10*time.Second, 100*time.Millisecond)

	status, err := chromedp.Run(page, chromedp.Text(chromedp.CSS(answer+` .response-col_status`)))
	require.NoError(t, err)
	body, err := chromedp.Run(page, chromedp.Text(chromedp.CSS(answer+` .response-col_description`)))
	require.NoError(t, err)
	require.Equal(t, "201", strings.TrimSpace(status), "the page shows:\n%s", body)
	require.Contains(t, body, `"net_fee": 2320.00`, "the page shows the sample's net fee exactly as the service wrote it")
	if path := os.Getenv("DOCS_SCREENSHOT"); path != "" { // for the README
		png, err := chromedp.Run(page, chromedp.Screenshot(chromedp.CSS(op+` .responses-inner > div:first-child`)))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
	}

	// What was fetched: the page, its scripts and styles, the description and
	// the POST itself, all from the service; nothing from a CDN.
	fetched, err := chromedp.Run(page, chromedp.Evaluate[[]string](
		`[location.href].concat(performance.getEntriesByType("resource").map(e => e.name))`))
	require.NoError(t, err)
	base, err := url.Parse(s.url)
	require.NoError(t, err)
	for _, f := range fetched {
		u, err := url.Parse(f)
		require.NoError(t, err, f)
		if u.Scheme == "data" || u.Scheme == "blob" {
			continue
		}
		require.Equal(t, base.Host, u.Host, "the docs page fetched %s", f)
	}
	require.Contains(t, strings.Join(fetched, "\n"), s.url+"/openapi.json")

	// And the claim posted from the page is counted.
	top := mustDo(t, http.MethodGet, s.url+"/top-providers", "", nil)
	require.Equal(t, http.StatusOK, top.status)
	require.Contains(t, string(top.body), `{"provider_npi":"1497775538","total_net_fee":955.00}`)
}

// openBrowser starts a headless chromium of the test's own (a new profile,
// no network of its own: this machine has none to offer) and returns a tab.
func openBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1280, 1600),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	page, cancelPage := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelPage)
	return page
}
