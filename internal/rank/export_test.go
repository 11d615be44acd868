package rank

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Versions reads the version of every provider's total the live set holds.
func (r *Redis) Versions(ctx context.Context) (map[string]int64, error) {
	gen, _, err := r.liveGeneration(ctx)
	if err != nil && !errors.Is(err, errNoGeneration) {
		return nil, err
	}
	out := map[string]int64{}
	iter := r.client.Scan(ctx, 0, r.keys.VersionsPrefix()+gen+":*", 1000).Iterator()
	for iter.Next(ctx) {
		fields, err := r.client.HGetAll(ctx, iter.Val()).Result()
		if err != nil {
			return nil, err
		}
		for npi, s := range fields {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("version of %s: %w", npi, err)
			}
			out[npi] = n
		}
	}
	return out, iter.Err()
}
