// Package migrations holds the database schema as goose SQL migrations,
// embedded in the binary. They are the only definition of the schema: the
// service and every test run these same files.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
