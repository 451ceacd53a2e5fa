package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is a child process the benchmark started and must stop.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited
	err     error         // its exit status, valid after exited is closed
}

// startProc starts bin with args in its own process group (so a Ctrl-C on
// the terminal reaches only the benchmark, which then stops its children in
// order) and with PR_SET_PDEATHSIG, so the kernel kills it if the benchmark
// dies without cleaning up. Its stdout and stderr go to logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
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
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig to the process group, waits up to grace, then kills the
// group and waits for the exit. It is safe to call more than once.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || !p.running() {
		return
	}
	_ = syscall.Kill(-p.pid(), sig)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.exited
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := freePort()
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

// redisServer is the private redis-server of the run.
type redisServer struct {
	*proc
	addr   string
	client *redis.Client
}

// startRedis starts redis-server on a free loopback port without
// persistence and waits until it answers PING.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH (apt-get install -y redis-server): %w", err)
	}
	var lastErr error
	for range 3 { // the free port may be taken before redis binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc("redis-server", filepath.Join(dir, "redis.log"), os.Environ(), bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
			"--loglevel", "warning")
		if err != nil {
			return nil, err
		}
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 16})
		if err := waitFor(ctx, 10*time.Second, p, func(ctx context.Context) error {
			return c.Ping(ctx).Err()
		}); err != nil {
			c.Close()
			p.stop(syscall.SIGTERM, 3*time.Second)
			lastErr = fmt.Errorf("redis-server on %s: %w\n%s", addr, err, p.logTail(20))
			continue
		}
		return &redisServer{proc: p, addr: addr, client: c}, nil
	}
	return nil, lastErr
}

// close closes the client and stops the server.
func (r *redisServer) close() {
	if r == nil {
		return
	}
	r.client.Close()
	r.stop(syscall.SIGTERM, 5*time.Second)
}

// waitFor polls check until it succeeds, p exits, ctx ends or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, p *proc, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err = check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited (%v) before it was ready: %w", p.name, p.err, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startCaddy runs `caddy run` on the Caddyfile at path with HOME and the XDG
// directories inside dir, and waits until every URL in ready answers 2xx to
// its POST (check) or to a GET (when the body is nil).
func startCaddy(ctx context.Context, bin, dir, caddyfile string, ready []readyCheck) (*proc, error) {
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
	)
	for _, d := range []string{"home", "data", "config", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	p, err := startProc("caddy", filepath.Join(dir, "caddy.log"), env, bin,
		"run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: newTransport(1), Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for _, rc := range ready {
		err := waitFor(ctx, 20*time.Second, p, func(ctx context.Context) error {
			_, err := rc.do(ctx, client)
			return err
		})
		if err != nil {
			p.stop(syscall.SIGINT, 5*time.Second)
			return nil, fmt.Errorf("caddy: %s: %w\n--- caddy log (tail) ---\n%s", rc.url, err, p.logTail(30))
		}
	}
	return p, nil
}

// readyCheck is one request that must answer 2xx.
type readyCheck struct {
	url    string
	header http.Header
	body   []byte // nil: GET
}

// do sends the request and returns the body of a 2xx response.
func (rc readyCheck) do(ctx context.Context, c *http.Client) ([]byte, error) {
	method, body := http.MethodGet, io.Reader(nil)
	if rc.body != nil {
		method, body = http.MethodPost, bytes.NewReader(rc.body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rc.url, body)
	if err != nil {
		return nil, err
	}
	if rc.header != nil {
		req.Header = rc.header.Clone()
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, errorCode(buf.Bytes()))
	}
	return buf.Bytes(), nil
}

// procCPU returns the user+system CPU time of pid from /proc/<pid>/stat
// (USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
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

// selfCPU returns the CPU time of this process (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusKB returns the named fields (e.g. VmRSS, VmHWM) of
// /proc/<pid>/status in KiB.
func procStatusKB(pid int, names ...string) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		for _, n := range names {
			if k == n {
				fs := strings.Fields(v)
				if len(fs) > 0 {
					kb, err := strconv.ParseInt(fs[0], 10, 64)
					if err == nil {
						out[n] = kb
					}
				}
			}
		}
	}
	return out, sc.Err()
}

// machineBusy returns the CPU time all cores spent busy since boot (user,
// nice, system, irq, softirq, steal of the "cpu" line of /proc/stat).
func machineBusy() time.Duration {
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

// loadAvg returns the 1-minute load average from /proc/loadavg (-1 if unknown).
func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
