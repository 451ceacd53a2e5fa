// Package caddyproc runs the real Caddy binary with the moserver module (go
// build ./cmd/caddy, or $MOSERVER_CADDY_BIN) as a child process, for
// integration tests.
//
// Typical use:
//
//	port := caddyproc.FreePort(t)
//	inst := caddyproc.Start(t, fmt.Sprintf(`
//	http://127.0.0.1:%d {
//		moserver { ... }
//	}`, port), fmt.Sprintf("http://127.0.0.1:%d/", port))
//	// ... talk to it; inst.Logs() has its output; it is stopped in t.Cleanup.
//
// Every instance gets its own HOME and XDG_{DATA,CONFIG,CACHE}_HOME inside
// t.TempDir(), so it never touches the real ~/.local/share/caddy. Pass e.g.
// "XDG_DATA_HOME=/some/dir" in env to share storage between two instances.
//
// Start adds to the Caddyfile's global options (creating the block if needed):
//   - "admin localhost:<free port>" unless an admin directive is present, because
//     Caddy's default admin address localhost:2019 would collide between tests;
//   - "skip_install_trust" unless present, so Caddy's local CA never tries to
//     install itself into the system trust store (tests run as root).
package caddyproc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModulePath is the module whose go.mod marks the repository root.
const ModulePath = "github.com/caddy-moserver/caddy-moserver"

// EnvBinary names the environment variable that points at a prebuilt binary.
const EnvBinary = "MOSERVER_CADDY_BIN"

const (
	// ReadyTimeout bounds how long Start/Restart wait for readyURL to answer.
	ReadyTimeout = 20 * time.Second
	// StopTimeout bounds how long Stop waits after SIGINT before killing.
	StopTimeout = 5 * time.Second
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Binary returns the path of the Caddy binary to test: $MOSERVER_CADDY_BIN if
// set (the test fails if that file does not exist), otherwise a binary built
// from the repository's own main (go build ./cmd/caddy: Caddy's standard
// modules and this one) once per test process, into a temporary directory;
// Go's build cache makes that quick when nothing changed. A failed build
// fails the test with the build output.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("caddyproc: %s=%q: %v", EnvBinary, p, err)
		}
		if st, err := os.Stat(abs); err != nil || st.IsDir() {
			t.Fatalf("caddyproc: %s=%q does not name an existing file (unset it to build with go build ./cmd/caddy)", EnvBinary, p)
		}
		return abs
	}
	buildOnce.Do(func() {
		root, err := RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := binaryDir()
		if err != nil {
			buildErr = err
			return
		}
		bin := filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/caddy in %s: %v\n%s", root, err, tailLines(string(out), 150))
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatalf("caddyproc: building caddy failed: %v", buildErr)
	}
	return buildBin
}

// binaryDir makes the directory of this process's binary,
// <tmp>/moserver-caddy-<pid>, and removes those of processes that have
// exited (a test process cannot remove its own when it ends).
func binaryDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "moserver-caddy-*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "moserver-caddy-"))
		if err == nil && pid != os.Getpid() && !alive(pid) {
			_ = os.RemoveAll(d)
		}
	}
	dir := filepath.Join(os.TempDir(), "moserver-caddy-"+strconv.Itoa(os.Getpid()))
	return dir, os.MkdirAll(dir, 0o755)
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	_, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
	return err == nil
}

// tailLines returns the last n lines of s (compiler errors come last in a build log).
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("[... %d earlier lines omitted ...]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// RepoRoot returns the repository root: the nearest directory at or above the
// working directory whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return findRepoRoot(wd)
}

func findRepoRoot(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && goModPath(data) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("caddyproc: no go.mod for module %s at or above %s", ModulePath, start)
		}
		dir = parent
	}
}

// goModPath returns the module path declared in a go.mod file, or "".
func goModPath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			rest = strings.TrimSpace(rest)
			if i := strings.Index(rest, "//"); i >= 0 {
				rest = strings.TrimSpace(rest[:i])
			}
			return strings.Trim(rest, `"`+"`")
		}
	}
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("caddyproc: FreePort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Instance is a running (or stopped) caddy process.
type Instance struct {
	t        testing.TB
	bin      string
	dir      string
	readyURL string
	env      []string

	// AdminAddr is the admin endpoint used by Reload (e.g. "localhost:41234"),
	// taken from the Caddyfile's "admin" global option or injected by Start.
	// Empty when the Caddyfile says "admin off". Callers may overwrite it.
	AdminAddr string

	mu         sync.Mutex
	configPath string
	logs       lockedBuffer
	cmd        *exec.Cmd
	done       chan struct{} // closed when cmd has exited
	waitErr    error
	reloads    int
	logsShown  bool // logs already included in a t.Fatal message
}

// Start writes caddyfile to a temp dir, starts `caddy run` on it with the extra
// env ("KEY=value"), waits until a GET of readyURL gets any HTTP response
// (within ReadyTimeout), and stops the process in t.Cleanup. If readyURL is
// empty, readiness is checked on the admin endpoint instead.
func Start(t testing.TB, caddyfile, readyURL string, env ...string) *Instance {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()

	cfg, admin, err := prepareCaddyfile(caddyfile, func() int { return FreePort(t) })
	if err != nil {
		t.Fatalf("caddyproc: %v", err)
	}
	inst := &Instance{
		t:         t,
		bin:       bin,
		dir:       dir,
		readyURL:  readyURL,
		env:       buildEnv(os.Environ(), dir, env),
		AdminAddr: admin,
	}
	inst.configPath = inst.writeConfig("Caddyfile", cfg)

	t.Cleanup(func() {
		inst.Stop()
		inst.mu.Lock()
		shown := inst.logsShown
		inst.mu.Unlock()
		if t.Failed() && !shown {
			t.Logf("caddyproc: logs of caddy (config %s):\n%s", inst.ConfigPath(), inst.Logs())
		}
	})
	inst.start()
	return inst
}

// Dir is the instance's temp dir (config files, and HOME/XDG dirs unless overridden).
func (i *Instance) Dir() string { return i.dir }

// ConfigPath is the Caddyfile currently in use (the latest one after Reload).
func (i *Instance) ConfigPath() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.configPath
}

// Logs returns everything the process (and its restarts) wrote to stdout and stderr so far.
func (i *Instance) Logs() string { return i.logs.String() }

// Env returns the full environment the process runs with.
func (i *Instance) Env() []string { return append([]string(nil), i.env...) }

// Running reports whether the process is running.
func (i *Instance) Running() bool {
	i.mu.Lock()
	done := i.done
	i.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop sends SIGINT, waits up to StopTimeout for the process to exit, then
// kills it. It is a no-op when the process is not running.
func (i *Instance) Stop() {
	i.mu.Lock()
	cmd, done := i.cmd, i.done
	i.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(StopTimeout):
		i.logs.WriteString(fmt.Sprintf("\n--- caddyproc: no exit %s after SIGINT; killing ---\n", StopTimeout))
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart stops the process and starts it again with the same (latest) config
// and env, then waits until it is ready.
func (i *Instance) Restart() {
	i.t.Helper()
	i.Stop()
	i.logs.WriteString("\n--- caddyproc: restart ---\n")
	i.start()
}

// Reload writes newCaddyfile and applies it to the running process with
// `caddy reload --config <file> --adapter caddyfile --address <AdminAddr>`.
// The same global options as in Start are added (with the current AdminAddr).
// Later Restarts use the new config.
func (i *Instance) Reload(t testing.TB, newCaddyfile string) {
	t.Helper()
	if i.AdminAddr == "" {
		t.Fatalf("caddyproc: Reload: no admin address (the Caddyfile disabled the admin endpoint)")
	}
	cfg, _, err := prepareCaddyfileWithAdmin(newCaddyfile, i.AdminAddr)
	if err != nil {
		t.Fatalf("caddyproc: Reload: %v", err)
	}
	i.mu.Lock()
	i.reloads++
	name := fmt.Sprintf("Caddyfile.reload%d", i.reloads)
	i.mu.Unlock()
	path := i.writeConfig(name, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, i.bin, "reload", "--config", path, "--adapter", "caddyfile", "--address", i.AdminAddr)
	cmd.Dir = i.dir
	cmd.Env = i.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		i.mu.Lock()
		i.logsShown = true
		i.mu.Unlock()
		t.Fatalf("caddyproc: caddy reload --config %s: %v\n%s\n--- caddy logs ---\n%s", path, err, out, i.Logs())
	}
	i.mu.Lock()
	i.configPath = path
	i.mu.Unlock()
}

func (i *Instance) writeConfig(name, content string) string {
	path := filepath.Join(i.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		i.t.Fatalf("caddyproc: writing %s: %v", path, err)
	}
	return path
}

func (i *Instance) start() {
	i.t.Helper()
	cmd := exec.Command(i.bin, "run", "--config", i.ConfigPath(), "--adapter", "caddyfile")
	cmd.Dir = i.dir
	cmd.Env = i.env
	cmd.Stdout = &i.logs
	cmd.Stderr = &i.logs
	if err := cmd.Start(); err != nil {
		i.t.Fatalf("caddyproc: starting %s: %v", i.bin, err)
	}
	done := make(chan struct{})
	i.mu.Lock()
	i.cmd, i.done = cmd, done
	i.mu.Unlock()
	go func() {
		err := cmd.Wait()
		i.mu.Lock()
		i.waitErr = err
		i.mu.Unlock()
		close(done)
	}()
	if err := i.waitReady(done); err != nil {
		i.Stop()
		i.mu.Lock()
		i.logsShown = true
		i.mu.Unlock()
		i.t.Fatalf("caddyproc: %v\n--- caddy logs (config %s) ---\n%s", err, i.ConfigPath(), i.Logs())
	}
}

func (i *Instance) waitReady(done <-chan struct{}) error {
	url := i.readyURL
	if url == "" {
		if i.AdminAddr == "" || strings.Contains(i.AdminAddr, "/") {
			return errors.New("no readyURL given and no TCP admin endpoint to poll instead")
		}
		url = "http://" + i.AdminAddr + "/config/"
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		// Proxy stays nil: never send local test traffic through $HTTP_PROXY.
		// Certificates are not verified: these are local test servers (self-signed / local CA).
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()

	deadline := time.Now().Add(ReadyTimeout)
	var lastErr error
	for {
		select {
		case <-done:
			i.mu.Lock()
			werr := i.waitErr
			i.mu.Unlock()
			return fmt.Errorf("caddy exited before %s answered: %v", url, werr)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("caddy not ready: no HTTP response from %s within %s (last error: %v)", url, ReadyTimeout, lastErr)
		}
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// buildEnv returns base with HOME and the XDG dirs pointed into dir, then the
// caller's extra entries; later entries override earlier ones with the same key.
func buildEnv(base []string, dir string, extra []string) []string {
	defaults := []string{
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "xdg-data"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "xdg-config"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "xdg-cache"),
	}
	all := make([]string, 0, len(base)+len(defaults)+len(extra))
	all = append(all, base...)
	all = append(all, defaults...)
	all = append(all, extra...)

	idx := map[string]int{}
	var out []string
	for _, kv := range all {
		k, _, _ := strings.Cut(kv, "=")
		if j, ok := idx[k]; ok {
			out[j] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// prepareCaddyfile adds the global options described in the package doc. It
// returns the new Caddyfile and the admin address ("" if the admin endpoint is off).
func prepareCaddyfile(caddyfile string, freePort func() int) (string, string, error) {
	return prepare(caddyfile, func() string { return fmt.Sprintf("localhost:%d", freePort()) })
}

func prepareCaddyfileWithAdmin(caddyfile, admin string) (string, string, error) {
	return prepare(caddyfile, func() string { return admin })
}

func prepare(caddyfile string, newAdmin func() string) (string, string, error) {
	lines := strings.Split(caddyfile, "\n")

	// The global options block, if any, is the first token of the file: a line with just "{".
	open, closeLine := -1, -1
	for n, l := range lines {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if s == "{" {
			open = n
		}
		break
	}
	if open >= 0 {
		depth := 0
		for n := open; n < len(lines) && closeLine < 0; n++ {
			s := strings.TrimSpace(lines[n])
			if strings.HasPrefix(s, "#") {
				continue
			}
			for _, c := range s {
				switch c {
				case '{':
					depth++
				case '}':
					depth--
				}
			}
			if depth == 0 {
				closeLine = n
			}
		}
		if closeLine < 0 {
			return "", "", errors.New("unterminated global options block in Caddyfile")
		}
	}

	admin, haveAdmin, haveSkip := "", false, false
	if open >= 0 {
		depth := 0
		for _, l := range lines[open : closeLine+1] {
			s := strings.TrimSpace(l)
			if f := strings.Fields(s); depth == 1 && len(f) > 0 { // a directive directly inside the global block
				switch f[0] {
				case "admin":
					haveAdmin = true
					if len(f) > 1 && f[1] != "{" && !strings.HasPrefix(f[1], "#") {
						admin = f[1]
					}
				case "skip_install_trust":
					haveSkip = true
				}
			}
			if !strings.HasPrefix(s, "#") {
				depth += strings.Count(s, "{") - strings.Count(s, "}")
			}
		}
	}

	var add []string
	switch {
	case !haveAdmin:
		admin = newAdmin()
		add = append(add, "\tadmin "+admin)
	case admin == "off":
		admin = ""
	case admin == "":
		admin = "localhost:2019" // "admin" with no address keeps Caddy's default
	}
	if !haveSkip {
		add = append(add, "\tskip_install_trust")
	}
	if len(add) == 0 {
		return caddyfile, admin, nil
	}
	if open < 0 {
		block := "{\n" + strings.Join(add, "\n") + "\n}\n\n"
		return block + caddyfile, admin, nil
	}
	out := make([]string, 0, len(lines)+len(add))
	out = append(out, lines[:open+1]...)
	out = append(out, add...)
	out = append(out, lines[open+1:]...)
	return strings.Join(out, "\n"), admin, nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
