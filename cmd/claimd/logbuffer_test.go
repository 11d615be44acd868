package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Informational lines wait for the next tick; a warning goes out at once,
// with everything before it, in order; Close writes what is left.
func TestLogBuffer(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	buf := newLogBuffer(&out)
	log := newLogger(buf, slog.LevelInfo)
	log.Info("request", "status", 200)
	log.Warn("redis is slow")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2, "the warning took the line before it along")
	require.Contains(t, lines[0], `"msg":"request"`)
	require.Contains(t, lines[1], `"msg":"redis is slow"`)

	log.With("component", "x").Info("another request")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "another request") },
		5*time.Second, 10*time.Millisecond, "a tick writes it")
	log.Info("last words")
	require.NoError(t, buf.Close())
	require.Contains(t, out.String(), "last words")
}
