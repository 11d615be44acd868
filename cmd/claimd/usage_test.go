package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// A mistyped flag: claimd prints the error once, with a one-line hint, and
// exits 1; not the whole help, not the error twice. -h still gives the help.
func TestMistypedFlag(t *testing.T) {
	runAsMain()
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMistypedFlag$")
	cmd.Env = append(os.Environ(), runMainEnv+"=reconcile --fulll")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "claimd fails: %v", err)
	require.Equal(t, 1, exit.ExitCode())
	require.Equal(t, "claimd: flag provided but not defined: -fulll\nrun 'claimd --help' for usage\n", stderr.String())
	require.Empty(t, stdout.String())

	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"dlq", "list", "-h"}, func(string) string { return "" }, &out, &errOut)
	require.True(t, errors.Is(err, flag.ErrHelp))
	require.Contains(t, out.String(), "claimd dlq list")
	require.Empty(t, errOut.String())
}
