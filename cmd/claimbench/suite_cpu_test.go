package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestProcTimes(t *testing.T) {
	// A command name with spaces and parentheses, as the kernel writes it.
	line := []byte("4242 (postgres: root (x) idle) S 17 4242 4242 0 -1 4194560 900 0 0 0 250 75 12 3 20 0 1 0 100 0 0")
	comm, ppid, self, children, ok := procTimes(line)
	require.True(t, ok)
	require.Equal(t, "postgres: root (x) idle", comm)
	require.Equal(t, 17, ppid)
	require.Equal(t, 3250*time.Millisecond, self, "utime 250 + stime 75 ticks of 10 ms")
	require.Equal(t, 150*time.Millisecond, children)
	_, _, _, _, ok = procTimes([]byte("4242 (cut"))
	require.False(t, ok)

	// This process's own time grows as it works.
	before := sampleCPUOf(os.Getpid(), "0").generator
	deadline := time.Now().Add(300 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = n * n
	}
	require.Greater(t, sampleCPUOf(os.Getpid(), "0").generator, before)

	c := costPer(cpuSample{claimd: time.Second}, cpuSample{claimd: 3 * time.Second, redis: time.Second}, 1000)
	require.Equal(t, 2000.0, c.Claimd, "µs per unit")
	require.Equal(t, 1000.0, c.Redis)
	require.Nil(t, costPer(cpuSample{}, cpuSample{}, 0))
}
