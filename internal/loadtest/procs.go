// Package loadtest has what the load tools (bench/, soak/) share: child
// processes they start and stop (redis-server, caddy), free loopback ports,
// readiness polling, and the CPU accounting of /proc. Linux only.
package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Proc is a child process a load tool started and must stop.
type Proc struct {
	Name    string
	LogPath string // its stdout and stderr
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit status, valid after exited is closed
}

// StartProc starts bin with args in its own process group (so a Ctrl-C on
// the terminal reaches only the tool, which then stops its children in
// order) and with PR_SET_PDEATHSIG, so the kernel kills it if the tool
// dies without cleaning up. Its stdout and stderr go to logPath.
func StartProc(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Err is the process's exit status once it has exited (nil while running).
func (p *Proc) Err() error {
	if p.Running() {
		return nil
	}
	return p.err
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop sends sig to the process group, waits up to grace, then kills the
// group and waits for the exit. It is safe to call more than once.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || !p.Running() {
		return
	}
	_ = syscall.Kill(-p.PID(), sig)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.exited
}

// LogTail returns the last n lines of the process's log.
func (p *Proc) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n distinct free loopback ports.
func FreePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// Redis is a private redis-server and a client of it.
type Redis struct {
	*Proc
	Addr   string
	Client *redis.Client
}

// StartRedis starts redis-server on a free loopback port without
// persistence, with its files in dir, and waits until it answers PING;
// poolSize sizes the client.
func StartRedis(ctx context.Context, dir string, poolSize int) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (apt-get install -y redis-server): %w", err)
	}
	var lastErr error
	for range 3 { // the free port may be taken before redis binds it
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := StartProc("redis-server", filepath.Join(dir, "redis.log"), os.Environ(), bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
			"--loglevel", "warning")
		if err != nil {
			return nil, err
		}
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: poolSize})
		if err := WaitFor(ctx, 10*time.Second, p, func(ctx context.Context) error {
			return c.Ping(ctx).Err()
		}); err != nil {
			c.Close()
			p.Stop(syscall.SIGTERM, 3*time.Second)
			lastErr = fmt.Errorf("redis-server on %s: %w\n%s", addr, err, p.LogTail(20))
			continue
		}
		return &Redis{Proc: p, Addr: addr, Client: c}, nil
	}
	return nil, lastErr
}

// Close closes the client and stops the server.
func (r *Redis) Close() {
	if r == nil {
		return
	}
	r.Client.Close()
	r.Stop(syscall.SIGTERM, 5*time.Second)
}

// WaitFor polls check until it succeeds, p exits, ctx ends or timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, p *Proc, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err = check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("%s exited (%v) before it was ready: %w", p.Name, p.err, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w", p.Name, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ProcCPU returns the user+system CPU time of pid from /proc/<pid>/stat
// (USER_HZ is 100 on Linux).
func ProcCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after it start
	// after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat times")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// MachineBusy returns the CPU time all cores spent busy since boot (user,
// nice, system, irq, softirq, steal of the "cpu" line of /proc/stat).
func MachineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, _ := strconv.ParseInt(f[i], 10, 64)
		busy += v
	}
	return time.Duration(busy) * 10 * time.Millisecond
}
