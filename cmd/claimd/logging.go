package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// libraryLog is where go-redis and amqp091-go write their own lines (a
// failed dial, a closed channel): claimd's logger, so stderr holds only
// JSON lines. Both libraries keep one process-wide logger, so it is set
// once, at init (amqp091-go's is a plain variable: setting it while a
// connection runs would race), and routeLibraryLogs points it at the
// logger run made.
var libraryLog atomic.Pointer[slog.Logger]

func init() {
	libraryLog.Store(newLogger(os.Stderr, slog.LevelInfo))
	redis.SetLogger(redisLogger{})
	amqp.SetLogger(amqpLogger{})
}

// routeLibraryLogs sends the libraries' lines to log from now on.
func routeLibraryLogs(log *slog.Logger) { libraryLog.Store(log) }

// routeLibraries is set by main: the process's own run points the library
// loggers at its logger. Tests that call run in-process leave them alone,
// or one test's library lines would land in another's buffer.
var routeLibraries bool

// libraryLine logs one line of a library's at warning level: the libraries
// do not say a level, and what they write is about trouble.
func libraryLine(ctx context.Context, lib, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	msg = strings.TrimPrefix(msg, "redis: ") // go-redis names itself in most lines
	libraryLog.Load().WarnContext(ctx, msg, "library", lib)
}

// redisLogger is go-redis's Logging interface.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	libraryLine(ctx, "go-redis", format, v...)
}

// amqpLogger is amqp091-go's Logging interface.
type amqpLogger struct{}

func (amqpLogger) Printf(format string, v ...any) {
	libraryLine(context.Background(), "amqp091-go", format, v...)
}

// durationInSeconds keeps claimd's one unit for durations in logs: seconds,
// as a number, under a key ending in _seconds (as the metrics and goose's
// migration lines have it; a number sorts and sums where "1m30s" must be
// parsed). Call sites log durations so; this turns a time.Duration that
// slips through (JSON would give it in nanoseconds) into the same form.
func durationInSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_seconds") {
		key += "_seconds"
	}
	return slog.Float64(key, a.Value.Duration().Seconds())
}
