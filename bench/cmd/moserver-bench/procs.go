package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
)

// startCaddy runs `caddy run` on the Caddyfile at path with HOME and the XDG
// directories inside dir, and waits until every URL in ready answers 2xx to
// its POST (check) or to a GET (when the body is nil).
func startCaddy(ctx context.Context, bin, dir, caddyfile string, ready []readyCheck) (*loadtest.Proc, error) {
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
	p, err := loadtest.StartProc("caddy", filepath.Join(dir, "caddy.log"), env, bin,
		"run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: newTransport(1), Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for _, rc := range ready {
		err := loadtest.WaitFor(ctx, 20*time.Second, p, func(ctx context.Context) error {
			_, err := rc.do(ctx, client)
			return err
		})
		if err != nil {
			p.Stop(syscall.SIGINT, 5*time.Second)
			return nil, fmt.Errorf("caddy: %s: %w\n--- caddy log (tail) ---\n%s", rc.url, err, p.LogTail(30))
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
