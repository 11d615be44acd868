package main

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// reloadOnNodeFailure asks a cluster client to reload its slot map when a
// command fails without a reply from Redis (connection refused, reset, or a
// timeout). go-redis reloads it on a MOVED reply, but a master that died
// sends none: without this, commands for its slots would keep going to the
// dead address after its replica took over, until the next periodic
// reload. Reloads coalesce in go-redis (one at a time, 200ms apart), so a
// burst of failures costs one.
type reloadOnNodeFailure struct{ cluster *redis.ClusterClient }

func (h reloadOnNodeFailure) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.cluster.ReloadState(ctx)
		}
		return conn, err
	}
}

func (h reloadOnNodeFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if nodeFailed(err) {
			h.cluster.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnNodeFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if nodeFailed(cmd.Err()) {
				h.cluster.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// nodeFailed says err is not Redis's answer (a reply, an error reply, or
// nil) but a failure to get one.
func nodeFailed(err error) bool {
	var reply redis.Error
	return err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply)
}
