package faulttest

import (
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// process is a child process a test started (redis-server, postgres,
// RabbitMQ, Prometheus, claimd), and the one place that waits for it.
//
// It gets SIGKILL when the test binary dies, however it dies (Pdeathsig).
// The kernel sends that signal when the thread that forked the child ends,
// not only when the process does, and Go ends an OS thread whenever a
// goroutine locked to it exits without unlocking: a child forked from an
// ordinary goroutine's thread would be killed as soon as some goroutine that
// later ran locked on that thread exited. So the child is forked from a
// goroutine locked to its thread, which then waits for the child there:
// nothing else runs on that thread, and it ends only after the child has
// exited, or with the test binary.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited and been reaped; err is then set
	err    error         // what cmd.Wait returned
}

// spawn starts cmd (adding Pdeathsig SIGKILL to its SysProcAttr).
// The caller may close its copies of the files cmd writes to once it
// returns: the child has its own.
func spawn(cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &process{cmd: cmd, exited: make(chan struct{})}
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
func (p *process) Pid() int { return p.cmd.Process.Pid }

// Running reports whether the child has not exited yet.
func (p *process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the child.
func (p *process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// sendKill sends SIGKILL, to the child's process group too when it leads
// one (Setpgid), unless the child has exited: once it is reaped, its pid
// may be someone else's.
func (p *process) sendKill() {
	if !p.Running() {
		return
	}
	if p.cmd.SysProcAttr.Setpgid {
		// The child is not reaped until it is dead, so the group is still ours.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	_ = p.cmd.Process.Kill() // works on a stopped (SIGSTOP) process too
}

// Kill sends SIGKILL (see sendKill) and waits for the exit.
func (p *process) Kill() {
	p.sendKill()
	<-p.exited
}

// Terminate sends sig and waits up to timeout for the exit; if the child is
// still running then, it kills it and reports false.
func (p *process) Terminate(sig syscall.Signal, timeout time.Duration) bool {
	_ = p.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}
