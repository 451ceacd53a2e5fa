package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

// usedMemory is Redis's used_memory in bytes (-1 if unknown).
func usedMemory(ctx context.Context, r *loadtest.Redis) int64 {
	info, err := r.Client.Info(ctx, "memory").Result()
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// caddyServer is the Caddy under test.
type caddyServer struct {
	*loadtest.Proc
	base  string // http://127.0.0.1:<port>
	admin string // 127.0.0.1:<port>
}

// buildCaddyfile renders the soak's Caddyfile: one moserver site on a
// loopback port with the private Redis, and the admin endpoint on another.
// refresh_grace is 0 (strict) because the soak checks that a second
// presentation of a token, even right after its rotation, is refused.
func buildCaddyfile(adminPort, port int, redisAddr, storageDir string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	persist_config off
	auto_https off
	skip_install_trust
	storage file_system %[4]q
	grace_period 2s
}

http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	moserver {
		issuer http://127.0.0.1:%[2]d/wp-json/moserver
		storage redis redis://%[3]s/0
		key_prefix soak:
		refresh_grace 0
		client %[5]s {
			secret %[6]s
			scopes profile email
		}
		client %[7]s {
			secret %[8]s
			scopes profile email
			refresh_tokens
		}
	}
	respond "not the token endpoint" 404
}
`, adminPort, port, redisAddr, storageDir, ccClient, ccSecret, rtClient, rtSecret)
}

// startCaddy writes the Caddyfile into dir, runs `caddy run` with HOME and
// the XDG directories inside dir and waits until the JWKS answers 200.
func startCaddy(ctx context.Context, bin, dir, redisAddr string) (*caddyServer, error) {
	var ports [2]int
	for i := range ports {
		for {
			p, err := loadtest.FreePort()
			if err != nil {
				return nil, err
			}
			if i == 0 || p != ports[0] {
				ports[i] = p
				break
			}
		}
	}
	for _, d := range []string{"home", "data", "config", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(buildCaddyfile(ports[0], ports[1], redisAddr, filepath.Join(dir, "data"))), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
	)
	p, err := loadtest.StartProc("caddy", filepath.Join(dir, "caddy.log"), env, bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	cs := &caddyServer{Proc: p, base: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), admin: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	err = loadtest.WaitFor(ctx, 20*time.Second, p, func(ctx context.Context) error {
		_, err := getBody(ctx, hc, cs.base+"/wp-json/moserver/jwks")
		return err
	})
	if err != nil {
		p.Stop(syscall.SIGINT, 5*time.Second)
		return nil, fmt.Errorf("caddy: %w\n--- caddy log (tail) ---\n%s", err, p.LogTail(30))
	}
	return cs, nil
}

// getBody GETs url and returns the body of a 200.
func getBody(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, res.StatusCode)
	}
	return body, nil
}

// goHeap is what Caddy's admin /debug/vars and /debug/pprof/goroutine say
// about its Go heap and goroutines (-1 where unknown).
type goHeap struct {
	heapInuse  int64
	goroutines int64
}

func (cs *caddyServer) goHeap(ctx context.Context, c *http.Client) goHeap {
	out := goHeap{heapInuse: -1, goroutines: -1}
	if body, err := getBody(ctx, c, "http://"+cs.admin+"/debug/vars"); err == nil {
		var v struct {
			Memstats struct {
				HeapInuse int64 `json:"HeapInuse"`
			} `json:"memstats"`
		}
		if json.Unmarshal(body, &v) == nil {
			out.heapInuse = v.Memstats.HeapInuse
		}
	}
	if body, err := getBody(ctx, c, "http://"+cs.admin+"/debug/pprof/goroutine?debug=1"); err == nil {
		line, _, _ := bytes.Cut(body, []byte("\n"))
		if s, ok := strings.CutPrefix(string(line), "goroutine profile: total "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				out.goroutines = n
			}
		}
	}
	return out
}

// procStatusKB returns a field (e.g. VmRSS) of /proc/<pid>/status in KiB.
func procStatusKB(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == name {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				return strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// loadAvg returns /proc/loadavg's first three fields ("?" if unknown).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// moserverCounters scrapes Caddy's admin /metrics for the module's request
// counters (process-wide), keyed like metricKey.
func moserverCounters(ctx context.Context, admin string) (map[string]int64, error) {
	samples, err := loadtest.ScrapeMetrics(ctx, "http://"+admin+"/metrics")
	if err != nil {
		return nil, err
	}
	return loadtest.ModuleCounters(samples), nil
}

// cpuSnap is the CPU time used so far by Caddy, Redis, the soak itself and
// the whole machine (busy time of all cores).
type cpuSnap struct {
	caddy, redis, self, machine time.Duration
}

func takeCPU(caddyPid, redisPid int) cpuSnap {
	var s cpuSnap
	s.caddy, _ = loadtest.ProcCPU(caddyPid)
	s.redis, _ = loadtest.ProcCPU(redisPid)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.machine = loadtest.MachineBusy()
	return s
}

func (s cpuSnap) sub(o cpuSnap) cpuSnap {
	return cpuSnap{s.caddy - o.caddy, s.redis - o.redis, s.self - o.self, s.machine - o.machine}
}
