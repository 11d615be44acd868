// Package proc runs child processes that die with their parent (tests and
// the benchmark start claimd, redis-server, postgres, RabbitMQ and
// Prometheus), finds them free ports, and polls until they are ready. It
// imports nothing of the service, so that internal/testenv, which the
// service's own tests use, can build on it.
package proc

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Process is a child process a test or the benchmark started (claimd,
// redis-server, postgres, RabbitMQ, Prometheus), and the one place that
// waits for it.
//
// It gets SIGKILL when its parent dies, however it dies (Pdeathsig).
// The kernel sends that signal when the thread that forked the child ends,
// not only when the process does, and Go ends an OS thread whenever a
// goroutine locked to it exits without unlocking: a child forked from an
// ordinary goroutine's thread would be killed as soon as some goroutine that
// later ran locked on that thread exited. So the child is forked from a
// goroutine locked to its thread, which then waits for the child there:
// nothing else runs on that thread, and it ends only after the child has
// exited, or with the parent.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited and been reaped; err is then set
	err    error         // what cmd.Wait returned
}

// Spawn starts cmd (adding Pdeathsig SIGKILL to its SysProcAttr).
// The caller may close its copies of the files cmd writes to once it
// returns: the child has its own.
func Spawn(cmd *exec.Cmd) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // only once the child is gone
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is what waiting for the child returned; nil while it runs.
func (p *Process) Err() error {
	if p.Running() {
		return nil
	}
	return p.err
}

// State is the child's exit state; nil while it runs.
func (p *Process) State() *os.ProcessState {
	if p.Running() {
		return nil
	}
	return p.cmd.ProcessState
}

// Running reports whether the child has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the child.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// SendKill sends SIGKILL, to the child's process group too when it leads
// one (Setpgid), unless the child has exited: once it is reaped, its pid
// may be someone else's.
func (p *Process) SendKill() {
	if !p.Running() {
		return
	}
	if p.cmd.SysProcAttr.Setpgid {
		// The child is not reaped until it is dead, so the group is still ours.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	_ = p.cmd.Process.Kill() // works on a stopped (SIGSTOP) process too
}

// Kill sends SIGKILL (see SendKill) and waits for the exit.
func (p *Process) Kill() {
	p.SendKill()
	<-p.exited
}

// Terminate sends sig and waits up to timeout for the exit; if the child is
// still running then, it kills it and reports false.
func (p *Process) Terminate(sig syscall.Signal, timeout time.Duration) bool {
	_ = p.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}
