package main

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The CPU each process spends on a unit of work is the steadiest figure on a
// shared machine: latency and throughput move with whatever else runs, the
// CPU a claim costs does not. It is read from /proc before and after a load:
// claimd (its process), Postgres (every postgres process, with what the
// postmaster has reaped of the backends that ended), Redis (the redis-server
// listening on the suite's port), and the load generator (this process,
// which runs the loads in-process).

// userHZ is the unit of the times in /proc/<pid>/stat: Linux fixes it at 100
// for user space.
const userHZ = 100

// cpuSample is the CPU time used so far by each process of a measurement.
type cpuSample struct {
	claimd, postgres, redis, generator time.Duration
}

// cpuCost is the CPU each process spent per unit of work (a claim, a lookup).
type cpuCost struct {
	Units                              int64
	Claimd, Postgres, Redis, Generator float64 // microseconds per unit
}

// procTimes reads the utime, stime, cutime and cstime of a /proc/<pid>/stat
// line, and the command name.
func procTimes(stat []byte) (comm string, ppid int, self, children time.Duration, ok bool) {
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, 0, 0, false
	}
	comm = string(stat[open+1 : end])
	// After ") ": state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime ...
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 15 {
		return "", 0, 0, 0, false
	}
	n := make([]int64, 4)
	for i := range n {
		v, err := strconv.ParseInt(f[11+i], 10, 64)
		if err != nil {
			return "", 0, 0, 0, false
		}
		n[i] = v
	}
	ppid, _ = strconv.Atoi(f[1])
	tick := time.Second / userHZ
	return comm, ppid, time.Duration(n[0]+n[1]) * tick, time.Duration(n[2]+n[3]) * tick, true
}

// cpuHooks measure the CPU of one load: sampled just before its first
// request and just after its last, with server (claimd, or the bare server)
// in claimd's place; *into gets the cost per unit that units counts.
func (s *suite) cpuHooks(server int, into **cpuCost, units func(*loadResult) int64) runHooks {
	port := "6379"
	if u, err := url.Parse(s.cfg.RedisURL); err == nil && u.Port() != "" {
		port = u.Port()
	}
	var before cpuSample
	return runHooks{
		beforeLoad: func() { before = sampleCPUOf(server, port) },
		afterLoad:  func(res *loadResult) { *into = costPer(before, sampleCPUOf(server, port), units(res)) },
	}
}

// ackedClaims counts the claims a load had acknowledged.
func ackedClaims(res *loadResult) int64 {
	claims, _ := res.ackedClaims()
	return claims
}

// sampleCPUOf reads the CPU time of claimd (pid), Postgres, the Redis on
// redisPort and this process.
func sampleCPUOf(claimdPid int, redisPort string) cpuSample {
	var s cpuSample
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		_, _, s.generator, _, _ = procTimes(b)
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // ended meanwhile
		}
		comm, ppid, self, children, ok := procTimes(b)
		if !ok {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		switch {
		case pid == claimdPid:
			s.claimd = self
		case comm == "postgres":
			s.postgres += self
			if !isPostgres(ppid) { // the postmaster: add the backends it reaped
				s.postgres += children
			}
		case strings.HasPrefix(comm, "redis-server"):
			if cmd, err := os.ReadFile(filepath.Join(filepath.Dir(path), "cmdline")); err == nil &&
				bytes.Contains(cmd, []byte(":"+redisPort)) {
				s.redis += self
			}
		}
	}
	return s
}

func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == "postgres"
}

// costPer divides the CPU used between two samples by the units of work done.
func costPer(before, after cpuSample, units int64) *cpuCost {
	if units <= 0 {
		return nil
	}
	per := func(a, b time.Duration) float64 { return float64((b - a).Microseconds()) / float64(units) }
	return &cpuCost{Units: units,
		Claimd: per(before.claimd, after.claimd), Postgres: per(before.postgres, after.postgres),
		Redis: per(before.redis, after.redis), Generator: per(before.generator, after.generator)}
}
