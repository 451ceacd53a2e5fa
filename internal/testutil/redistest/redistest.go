// Package redistest gives tests a real Redis: the one named by REDIS_URL, or
// a private redis-server started for the test.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Start returns a client for the Redis named by the REDIS_URL environment
// variable or, when it is unset, for a private redis-server started for this
// test and stopped in t.Cleanup. It also returns a random key prefix unique
// to this call, so tests sharing a server do not see each other's keys.
// Keys are not deleted afterwards; tests should give them short TTLs.
func Start(t testing.TB) (client redis.UniversalClient, prefix string) {
	t.Helper()
	var opts *redis.Options
	if url := os.Getenv("REDIS_URL"); url != "" {
		var err error
		if opts, err = redis.ParseURL(url); err != nil {
			t.Fatalf("redistest: REDIS_URL: %v", err)
		}
	} else {
		opts = &redis.Options{Addr: StartServer(t).Addr}
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: ping %s: %v", opts.Addr, err)
	}
	return c, Prefix(t)
}

// Prefix returns a fresh random key prefix such as "test:1f2e3d4c5b6a7980:".
func Prefix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("redistest: random prefix: %v", err)
	}
	return "test:" + hex.EncodeToString(b) + ":"
}

// Server is a private redis-server process on a loopback port, without
// persistence: a restart starts empty.
type Server struct {
	// Addr is host:port; it stays the same across Restart.
	Addr string

	t   testing.TB
	dir string

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{} // closed when proc has exited
}

// StartServer starts a private redis-server on a free loopback port, waits
// until it answers PING and stops it in t.Cleanup. It fails the test if
// redis-server is not installed.
func StartServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v); install it with `apt-get install -y redis-server`, or set REDIS_URL", err)
	}
	s := &Server{t: t, dir: t.TempDir()}
	var err error
	for range 3 { // the free port can be taken before redis binds it
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop kills the server and waits for it to exit; it is a no-op if the
// server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc = nil
}

// Pause stops the server process (SIGSTOP): its connections stay open and
// what is sent to it waits, unanswered, until Resume, as in a stall.
func (s *Server) Pause() { s.signal("-STOP") }

// Resume continues a server Pause stopped (SIGCONT); it then runs what was
// sent to it meanwhile.
func (s *Server) Resume() { s.signal("-CONT") }

func (s *Server) signal(sig string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatal("redistest: the server is not running")
	}
	signal(s.t, sig, s.proc)
}

// signal sends a signal ("-STOP", "-CONT") to a process with kill(1), which
// keeps this package free of signal constants that only Unix has.
func signal(t testing.TB, sig string, p *os.Process) {
	t.Helper()
	if out, err := exec.Command("kill", sig, strconv.Itoa(p.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("redistest: kill %s %d: %v %s", sig, p.Pid, err, out)
	}
}

// Restart stops the server if it runs and starts it again, empty, on the
// same address, failing the test if it does not come up.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, port, _ := net.SplitHostPort(s.Addr)
	logPath := filepath.Join(s.dir, "redis-server.log")
	log, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create redis-server log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command("redis-server",
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.proc, s.exited = cmd.Process, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited early: %s", s.Addr, output())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %v; output: %s", s.Addr, startTimeout, err, output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
