package faulttest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/claim-process/claim-process/internal/loadkit/proc"
	"github.com/claim-process/claim-process/internal/testenv"
)

// rabbitServerBin is the RabbitMQ server start script, and rabbitCtlBin its
// control tool. The /usr/sbin wrappers insist on running as the rabbitmq
// user; these run as whoever calls them.
const (
	rabbitServerBin = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	rabbitCtlBin    = "/usr/lib/rabbitmq/bin/rabbitmqctl"
)

// rabbitStartTimeout bounds a boot. A boot loads and compiles thousands of
// Erlang modules, which takes long on a busy machine with few cores.
const rabbitStartTimeout = 120 * time.Second

// rabbitCtlTimeout bounds a rabbitmqctl command, which boots an Erlang VM of
// its own.
const rabbitCtlTimeout = 60 * time.Second

// RabbitQueueSettleTime is how long a quorum queue must have existed, and
// the node must have run since its last Start (SinceStart), before a
// SIGKILL of the node is sure to keep the queue's confirmed messages.
// RabbitMQ records which Raft log belongs to a quorum queue in a dets table
// (quorum/.../names.dets) that it does not sync at once (dets caches writes
// for up to 3s): a node killed within that window after a declaration, or
// after a start, can come back with the queue but an empty Raft log, the
// confirmed messages on disk and never read again. This is the broker's
// fault, not its client's, so scenarios that kill the node let this much
// time pass first; a graceful Stop has no such window.
const RabbitQueueSettleTime = 4 * time.Second

// RabbitServer is a RabbitMQ node of the test's own: its own node name,
// AMQP and distribution ports, Erlang cookie and data directory, all in a
// temporary directory. It can be stopped gracefully, killed with SIGKILL and
// started again on the same data, so durable queues and persistent messages
// survive, as on a real broker.
//
// It never touches the machine's shared node (rabbit@localhost): it has a
// different name and a random cookie (HOME is the temporary directory), so it
// could not even talk to it. The only thing it shares is the Erlang port
// mapper (epmd), where it registers its node name.
type RabbitServer struct {
	t        testing.TB
	port     int    // AMQP
	distPort int    // Erlang distribution
	dir      string // HOME, config, mnesia, logs
	node     string
	cluster  string        // the cluster_name it must answer with; "": its own node's (RabbitMQ's default)
	child    *proc.Process // nil when not started, or after Stop or Kill
	started  time.Time     // when the last Start found the node ready
	logShown bool          // a failed start already showed the logs
}

// StartRabbit starts a RabbitMQ node and waits until it accepts AMQP
// connections; it is killed when the test ends, and its logs are shown if
// the test failed.
func StartRabbit(t testing.TB) *RabbitServer {
	t.Helper()
	s := newRabbit(t, rabbitOptions{})
	s.Start()
	return s
}

// rabbitOptions are what the nodes of a cluster share (see
// StartRabbitCluster).
type rabbitOptions struct {
	cookie  string // the Erlang cookie; "": a random one of the node's own
	cluster string // cluster_name; "": RabbitMQ's default, the node's name
}

// newRabbit prepares a node (its ports, directory and configuration) and
// its cleanup, without starting it.
func newRabbit(t testing.TB, opts rabbitOptions) *RabbitServer {
	t.Helper()
	_, err := os.Stat(rabbitServerBin)
	require.NoError(t, err, "RabbitMQ must be installed")
	s := &RabbitServer{t: t, port: testenv.FreePort(t), distPort: testenv.FreePort(t), dir: t.TempDir(), cluster: opts.cluster}
	for s.distPort == s.port {
		s.distPort = testenv.FreePort(t)
	}
	s.node = fmt.Sprintf("rmqtest%d@localhost", s.port)

	cookie := opts.cookie
	if cookie == "" {
		cookie = randomCookie(t)
	}
	conf := []string{
		"listeners.tcp.1 = " + s.Addr(),
		// The log goes to the console, which Start sends to log/rabbit.log:
		// written at once, unlike RabbitMQ's own log file, whose last
		// seconds are lost to a SIGKILL.
		"log.console = true",
		"log.console.level = info",
		"log.console.use_colors = off",
		"log.file = false",
	}
	if s.cluster != "" {
		conf = append(conf, "cluster_name = "+s.cluster)
	}
	for name, content := range map[string]string{
		".erlang.cookie":    cookie,
		"rabbitmq-env.conf": "", // instead of /etc/rabbitmq/rabbitmq-env.conf, which names the shared node
		"rabbitmq.conf":     strings.Join(conf, "\n") + "\n",
		"enabled_plugins":   "[].\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600))
	}
	require.NoError(t, os.Chmod(filepath.Join(s.dir, ".erlang.cookie"), 0o400)) // Erlang refuses others

	// Registered before the start so that a failed start is cleaned up too;
	// it runs before t.TempDir's removal (cleanups run last first).
	t.Cleanup(func() {
		s.kill()
		if t.Failed() && !s.logShown {
			dumpFile(t, "rabbitmq "+s.node+" log", s.logPath())
		}
	})
	return s
}

// randomCookie is an Erlang cookie no other node has.
func randomCookie(t testing.TB) string {
	t.Helper()
	cookie := make([]byte, 16)
	_, err := rand.Read(cookie)
	require.NoError(t, err)
	return strings.ToUpper(hex.EncodeToString(cookie))
}

// URL is the node's AMQP URL, as the default guest user (allowed from
// 127.0.0.1 only, which is where it listens).
func (s *RabbitServer) URL() string { return fmt.Sprintf("amqp://guest:guest@%s/", s.Addr()) }

// Addr is the node's AMQP host:port.
func (s *RabbitServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Node is the Erlang node name (rabbitmqctl -n; see Ctl).
func (s *RabbitServer) Node() string { return s.node }

// Dir is the node's directory: its HOME (with the cookie), config, data and logs.
func (s *RabbitServer) Dir() string { return s.dir }

// logPath is the node's output: its whole log, across restarts.
func (s *RabbitServer) logPath() string { return filepath.Join(s.dir, "log", "rabbit.log") }
func (s *RabbitServer) pidPath() string { return filepath.Join(s.dir, "rabbit.pid") }

// Running reports whether the node's process is alive (it may still be
// booting or shutting down).
func (s *RabbitServer) Running() bool { return s.child != nil && s.child.Running() }

// Start starts the node (again: same name, ports and data) and waits until
// it accepts AMQP connections.
func (s *RabbitServer) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// start is Start returning its failure instead, so that several nodes can
// boot at once, from goroutines of their own.
func (s *RabbitServer) start() error {
	if s.child != nil {
		return fmt.Errorf("rabbitmq %s is already running", s.node)
	}
	for _, port := range []int{s.port, s.distPort} {
		if portOpen(port) {
			return fmt.Errorf("rabbitmq %s: something else listens on port %d", s.node, port)
		}
	}
	_ = os.Remove(s.pidPath()) // so that the one read below is the new node's
	if err := os.MkdirAll(filepath.Dir(s.logPath()), 0o755); err != nil {
		return err
	}
	console, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(console, "===== %s: starting %s\n", time.Now().Format(time.RFC3339Nano), s.node)

	cmd := exec.Command(rabbitServerBin)
	cmd.Dir = s.dir
	cmd.Env = append(s.env(),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(s.port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(s.distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(s.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(s.dir, "log"),
		"RABBITMQ_PID_FILE="+s.pidPath(),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		// Makes the script exec the Erlang VM instead of running it in the
		// background behind a signal-forwarding shell: the VM (beam.smp) is
		// then this very process, so Pdeathsig (see proc.Process), SIGKILL and Wait
		// reach it.
		"RUNNING_UNDER_SYSTEMD=true",
	)
	cmd.Stdout, cmd.Stderr = console, console
	// Its helpers (erl_child_setup, inet_gethost) in a group to kill; the
	// Pdeathsig proc.Spawn adds is kept across the script's execs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child, err := proc.Spawn(cmd)
	_ = console.Close() // the child has its own
	if err != nil {
		return fmt.Errorf("start rabbitmq %s: %w", s.node, err)
	}
	s.child = child

	if err := poll(rabbitStartTimeout, s.checkReady); err != nil {
		s.kill()
		s.logShown = true
		return fmt.Errorf("rabbitmq %s did not start: %w\n----- rabbitmq log (%s) -----\n%s\n----- end of rabbitmq log -----",
			s.node, err, s.logPath(), fileTail(s.logPath(), 32<<10))
	}
	s.started = time.Now()
	return nil
}

// env is the environment of the node's server and of rabbitmqctl for it.
// A clean one: nothing of the caller's (RABBITMQ_*, ERL_*) may point this
// node, or its cookie, at the shared one.
func (s *RabbitServer) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"HOME=" + s.dir,
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(s.dir, "rabbitmq-env.conf"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(s.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(s.dir, "enabled_plugins"),
		"RABBITMQ_NODENAME=" + s.node,
	}
}

// Ctl runs rabbitmqctl against the node (with its HOME, so its cookie) and
// returns what it printed.
func (s *RabbitServer) Ctl(args ...string) (string, error) {
	ctx, cancel := withTimeout(rabbitCtlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, rabbitCtlBin, append([]string{"-n", s.node}, args...)...)
	cmd.Dir = s.dir
	cmd.Env = s.env()
	// The script runs an Erlang VM of its own: a timeout kills them both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl -n %s %s: %w\n%s", s.node, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// SinceStart is how long ago the last Start found the node ready (see
// RabbitQueueSettleTime).
func (s *RabbitServer) SinceStart() time.Duration { return time.Since(s.started) }

// checkReady tells whether this process, and no other, accepts AMQP
// connections; an error given to proc.Stop when waiting longer is pointless.
func (s *RabbitServer) checkReady() error {
	if !s.child.Running() {
		return proc.Stop(fmt.Errorf("the node exited during start (%v)", s.child.State()))
	}
	// The pid file is written early in the boot, before the listener opens.
	pid, err := os.ReadFile(s.pidPath())
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(string(pid)); got != strconv.Itoa(s.child.Pid()) {
		return fmt.Errorf("pid file %s holds %q, not %d", s.pidPath(), got, s.child.Pid())
	}
	conn, err := amqp.DialConfig(s.URL(), amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return err
	}
	defer conn.Close()
	name, _ := conn.Properties["cluster_name"].(string)
	want := s.cluster
	if want == "" { // RabbitMQ's default: the node's name, with the host's FQDN
		want = strings.TrimSuffix(s.node, "localhost")
	}
	if !strings.HasPrefix(name, want) {
		return proc.Stop(fmt.Errorf("%s is answered by cluster %q, not by %s", s.Addr(), name, s.node))
	}
	return nil
}

// Stop stops the node gracefully, as `rabbitmqctl stop` does (the VM handles
// SIGTERM by stopping the rabbit application, flushing queues and message
// stores, then halting), and waits until it has exited and its ports are
// closed.
func (s *RabbitServer) Stop() {
	s.t.Helper()
	require.NotNil(s.t, s.child, "rabbitmq %s is not running", s.node)
	child := s.child
	if !child.Running() {
		s.child = nil
		s.t.Fatalf("rabbitmq %s had already exited (%v)", s.node, child.State())
	}
	require.NoError(s.t, child.Signal(syscall.SIGTERM))
	select {
	case <-child.Exited():
	case <-time.After(60 * time.Second):
		s.kill()
		s.logShown = true
		s.t.Fatalf("rabbitmq %s did not stop within 60s of SIGTERM; killed it\n----- rabbitmq log (%s) -----\n%s\n----- end of rabbitmq log -----",
			s.node, s.logPath(), fileTail(s.logPath(), 32<<10))
	}
	s.child = nil
	if !child.State().Success() { // a clean stop exits 0
		s.t.Errorf("rabbitmq %s stopped with %v", s.node, child.State())
	}
	s.waitPortsClosed()
}

// Kill kills the node with SIGKILL, with no chance to flush anything, and
// waits until it has exited and its ports are closed. Confirmed persistent
// messages in durable queues survive it, but see RabbitQueueSettleTime.
func (s *RabbitServer) Kill() {
	s.t.Helper()
	require.NotNil(s.t, s.child, "rabbitmq %s is not running", s.node)
	s.kill()
	s.waitPortsClosed()
}

// kill SIGKILLs the node and its process group and reaps it; it does not
// fail the test, so cleanups can use it.
func (s *RabbitServer) kill() {
	if s.child == nil {
		return
	}
	s.child.SendKill() // the VM and its process group (Setpgid), unless it is gone
	select {
	case <-s.child.Exited():
	case <-time.After(30 * time.Second):
		s.t.Logf("rabbitmq %s (pid %d) still not reaped 30s after SIGKILL", s.node, s.child.Pid())
	}
	s.child = nil
}

func (s *RabbitServer) waitPortsClosed() {
	s.t.Helper()
	waitFor(s.t, 10*time.Second, "rabbitmq "+s.node+" ports to close", func() error {
		for _, port := range []int{s.port, s.distPort} {
			if portOpen(port) {
				return fmt.Errorf("port %d still accepts connections", port)
			}
		}
		return nil
	})
}

// portOpen reports whether something accepts TCP connections on 127.0.0.1:port.
func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// fileTail returns the last n bytes of a file, or why it cannot.
func fileTail(path string, n int) string {
	text, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tail(string(text), n)
}
