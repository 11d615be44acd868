package httpapi

import (
	"embed"
	"net/http"
	"strings"

	"github.com/swaggest/swgui/v5/static"
	"github.com/vearutop/statigz"
)

// docsPath is where Swagger UI is served; its assets are under it.
const docsPath = "/docs"

// swaggerUI is our page for Swagger UI and its one plugin, exact-json.js:
// Swagger UI shows a JSON answer through JSON.parse and JSON.stringify,
// which turns the service's "net_fee": 2320.00 into 2320; the plugin shows
// the text the service sent, indented, numbers untouched.
//
//go:embed swaggerui/index.html swaggerui/exact-json.js
var swaggerUI embed.FS

// handleDocs serves Swagger UI at /docs, everything from the binary, so it
// works with no internet: our page and plugin, and Swagger UI 5's scripts,
// style sheet and icons as github.com/swaggest/swgui embeds them
// (gzip-compressed, served as they are to clients that take gzip). The page
// is a plain file rather than swgui's handler, whose html/template would
// keep the linker from dropping unused methods (10 MB more binary).
func handleDocs() http.Handler {
	index, err := swaggerUI.ReadFile("swaggerui/index.html")
	if err != nil {
		panic(err) // embedded above
	}
	plugin, err := swaggerUI.ReadFile("swaggerui/exact-json.js")
	if err != nil {
		panic(err)
	}
	assets := http.StripPrefix(docsPath+"/", statigz.FileServer(static.FS))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, docsPath) {
		case "", "/", "/index.html":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(index)
		case "/exact-json.js":
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = w.Write(plugin)
		default:
			assets.ServeHTTP(w, r)
		}
	})
}
