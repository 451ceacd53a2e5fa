package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the Sentinel of StartSentinel monitors its
// primary under.
const SentinelMaster = "mymaster"

// sentinelStartTimeout bounds StartSentinel: every process answering PING,
// the replica in sync, and the Sentinel knowing the replica.
const sentinelStartTimeout = 20 * time.Second

// Sentinel settings of StartSentinel: the primary is down after 1 s without
// a valid reply, one Sentinel suffices to agree on it (quorum 1), and a
// failover that stalls is retried after 3 s.
const (
	sentinelDownAfter       = 1000 // ms
	sentinelFailoverTimeout = 3000 // ms
)

// Sentinel is a private Redis deployment managed by Redis Sentinel: a
// primary, one replica of it, and one redis-server --sentinel process, all
// on free loopback ports, without persistence. The primary and the replica
// require Password; the Sentinel requires none. Start it with
// StartSentinel.
type Sentinel struct {
	// MasterName is the name the Sentinel monitors the primary under
	// (SentinelMaster).
	MasterName string
	// Password is the requirepass (and masterauth) of the Redis servers.
	Password string
	// Sentinels are the host:port addresses of the Sentinel processes.
	Sentinels []string

	t   testing.TB
	dir string

	mu       sync.Mutex
	primary  *node // the server the test last knew as the primary
	replica  *node // its replica; nil after a failover until Rejoin
	old      *node // the primary that KillPrimary killed; nil otherwise
	sentinel []*node
}

// node is one redis-server process (of a Sentinel setup or a cluster).
type node struct {
	addr    string
	logPath string
	proc    *os.Process
	exited  chan struct{} // closed when proc has exited
}

// kill SIGKILLs the process (stopped or not) and waits for it to exit.
func (n *node) kill() {
	_ = n.proc.Kill()
	<-n.exited
}

// log returns what the process has logged so far, for error messages.
func (n *node) log() string {
	b, _ := os.ReadFile(n.logPath)
	return string(b)
}

// StartSentinel starts a primary, a replica of it (--replicaof) and a
// Sentinel monitoring them (quorum 1, down-after-milliseconds 1000,
// failover-timeout 3000), and returns once the replica is in sync and the
// Sentinel sees it as a healthy replica, so that a failover can promote it.
// Everything is stopped in t.Cleanup. It fails the test if redis-server is
// not installed or the deployment is not up within 20 s.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v); install it with `apt-get install -y redis-server`", err)
	}
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		t.Fatalf("redistest: random password: %v", err)
	}
	s := &Sentinel{MasterName: SentinelMaster, Password: hex.EncodeToString(pw), t: t, dir: t.TempDir()}
	t.Cleanup(s.stopAll)
	start := time.Now()
	deadline := start.Add(sentinelStartTimeout)

	var err error
	if s.primary, err = s.startData(deadline, ""); err != nil {
		t.Fatalf("redistest: sentinel: primary: %v", err)
	}
	if s.replica, err = s.startData(deadline, s.primary.addr); err != nil {
		t.Fatalf("redistest: sentinel: replica: %v", err)
	}
	if err := s.waitLinkUp(s.replica, deadline); err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	sn, err := s.startSentinel(deadline)
	if err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	s.sentinel = append(s.sentinel, sn)
	s.Sentinels = append(s.Sentinels, sn.addr)
	if err := s.waitSentinelSeesReplica(deadline); err != nil {
		t.Fatalf("redistest: sentinel: %v", err)
	}
	t.Logf("redistest: Sentinel %v, primary %s, replica %s ready in %v", s.Sentinels, s.primary.addr, s.replica.addr,
		time.Since(start).Round(time.Millisecond))
	return s
}

// stopAll kills every process.
func (s *Sentinel) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range append([]*node{s.primary, s.replica, s.old}, s.sentinel...) {
		if n != nil {
			n.kill()
		}
	}
}

// FailoverOptions returns go-redis options for a client of the primary
// through the Sentinel (redis.NewFailoverClient); callers add timeouts.
func (s *Sentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:    s.MasterName,
		SentinelAddrs: append([]string(nil), s.Sentinels...),
		Password:      s.Password,
	}
}

// PrimaryAddr is the address of the primary: the first one, or the
// promoted replica once WaitFailover has returned.
func (s *Sentinel) PrimaryAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary.addr
}

// ReplicaAddr is the address of the replica; "" after a failover, until
// Rejoin.
func (s *Sentinel) ReplicaAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replica == nil {
		return ""
	}
	return s.replica.addr
}

// Client returns a client of one server of the deployment (with the
// password, no retries), closed in t.Cleanup.
func (s *Sentinel) Client(addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: s.Password, MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// KillPrimary SIGKILLs the primary and waits for it to exit: whatever it
// had not sent to its replica is gone.
func (s *Sentinel) KillPrimary() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.old != nil {
		s.t.Fatal("redistest: KillPrimary: the primary is already dead")
	}
	s.primary.kill()
	s.old = s.primary
}

// WaitFailover waits until the Sentinel names the replica as the primary
// and the replica reports role master, then returns its address. It fails
// the test if that takes longer than timeout.
func (s *Sentinel) WaitFailover(timeout time.Duration) string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.old == nil || s.replica == nil {
		s.t.Fatal("redistest: WaitFailover: call KillPrimary first")
	}
	start := time.Now()
	deadline := start.Add(timeout)
	want := s.replica.addr
	rc := redis.NewClient(&redis.Options{Addr: want, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	var problem error
	for time.Now().Before(deadline) {
		problem = nil
		for _, sn := range s.sentinel {
			got, err := sentinelMasterAddr(sn.addr, s.MasterName)
			if err == nil && got != want {
				err = fmt.Errorf("Sentinel %s names %s as the primary", sn.addr, got)
			}
			problem = errors.Join(problem, err)
		}
		if problem == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			role, err := rc.Do(ctx, "role").Slice()
			cancel()
			if err == nil && (len(role) == 0 || role[0] != "master") {
				err = fmt.Errorf("%s reports role %v", want, role)
			}
			if problem = err; problem == nil {
				s.t.Logf("redistest: failover to %s took %v", want, time.Since(start).Round(time.Millisecond))
				s.primary, s.replica = s.replica, nil
				return want
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: no failover to %s within %v: %v\nsentinel log:\n%s", want, timeout, problem, s.sentinel[0].log())
	return ""
}

// Rejoin restarts the primary KillPrimary killed, empty, on its address, as
// a replica of the current primary, and waits until it is in sync. After a
// failover the promoted primary has no replica until then.
func (s *Sentinel) Rejoin() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.old == nil || s.replica != nil {
		s.t.Fatal("redistest: Rejoin: call KillPrimary and WaitFailover first")
	}
	deadline := time.Now().Add(sentinelStartTimeout)
	n, err := s.startDataAt(s.old.addr, deadline, s.primary.addr)
	if err != nil {
		s.t.Fatalf("redistest: rejoin: %v", err)
	}
	s.old, s.replica = nil, n
	if err := s.waitLinkUp(n, deadline); err != nil {
		s.t.Fatalf("redistest: rejoin: %v", err)
	}
}

// PauseReplica stops the replica process (SIGSTOP): it stays connected to
// the primary but acknowledges nothing until ResumeReplica.
func (s *Sentinel) PauseReplica() { s.signalReplica("-STOP") }

// ResumeReplica continues the replica PauseReplica stopped (SIGCONT).
func (s *Sentinel) ResumeReplica() { s.signalReplica("-CONT") }

// signalReplica sends a signal to the replica (see signal).
func (s *Sentinel) signalReplica(sig string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replica == nil {
		s.t.Fatal("redistest: there is no replica")
	}
	signal(s.t, sig, s.replica.proc)
}

// PartitionReplica cuts the replica off its primary for good: it gives the
// replica a wrong masterauth and drops its replication link, so it cannot
// reconnect, and returns once the primary has no replica left. The replica
// keeps what it had received and stays eligible for promotion; whatever
// the primary accepts from now on exists on the primary only.
func (s *Sentinel) PartitionReplica() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.replica == nil || s.old != nil {
		s.t.Fatal("redistest: PartitionReplica needs a primary and its replica")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: s.replica.addr, Password: s.Password, MaxRetries: -1})
	defer rc.Close()
	if err := rc.ConfigSet(ctx, "masterauth", "wrong-"+s.Password).Err(); err != nil {
		s.t.Fatalf("redistest: partition: %v", err)
	}
	if err := rc.Do(ctx, "client", "kill", "type", "master").Err(); err != nil {
		s.t.Fatalf("redistest: partition: %v", err)
	}
	pc := redis.NewClient(&redis.Options{Addr: s.primary.addr, Password: s.Password, MaxRetries: -1})
	defer pc.Close()
	for {
		info, err := pc.Info(ctx, "replication").Result()
		if err == nil && infoFields(info)["connected_slaves"] == "0" {
			return
		}
		if ctx.Err() != nil {
			s.t.Fatalf("redistest: partition: the primary still has a replica: %v\n%s", err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startData starts a Redis server on a free port, a replica of primary
// unless it is "".
func (s *Sentinel) startData(deadline time.Time, primary string) (*node, error) {
	var err error
	for range 3 { // a free port can be taken before redis binds it
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		var n *node
		if n, err = s.startDataAt(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), deadline, primary); err == nil {
			return n, nil
		}
	}
	return nil, err
}

// startDataAt starts a Redis server on addr. Full syncs start at once
// (repl-diskless-sync-delay 0) rather than after Redis's default 5 s.
func (s *Sentinel) startDataAt(addr string, deadline time.Time, primary string) (*node, error) {
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(s.dir, "redis-"+port)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "notice",
		"--requirepass", s.Password, "--masterauth", s.Password, "--repl-diskless-sync-delay", "0"}
	if primary != "" {
		host, pport, _ := net.SplitHostPort(primary)
		args = append(args, "--replicaof", host, pport)
	}
	n, err := startNode(addr, filepath.Join(dir, "redis.log"), args)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: addr, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	if err := waitPing(n, deadline, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
		n.kill()
		return nil, err
	}
	return n, nil
}

// startSentinel writes a sentinel.conf monitoring the primary and starts a
// Sentinel on a free port.
func (s *Sentinel) startSentinel(deadline time.Time) (*node, error) {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			continue
		}
		p := strconv.Itoa(port)
		dir := filepath.Join(s.dir, "sentinel-"+p)
		if err = os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		host, pport, _ := net.SplitHostPort(s.primary.addr)
		conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: it must be writable
		m := s.MasterName
		text := strings.Join([]string{
			"port " + p,
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			fmt.Sprintf("sentinel monitor %s %s %s 1", m, host, pport),
			fmt.Sprintf("sentinel auth-pass %s %s", m, s.Password),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", m, sentinelDownAfter),
			fmt.Sprintf("sentinel failover-timeout %s %d", m, sentinelFailoverTimeout),
			fmt.Sprintf("sentinel parallel-syncs %s 1", m),
		}, "\n") + "\n"
		if err = os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		var n *node
		if n, err = startNode(net.JoinHostPort("127.0.0.1", p), filepath.Join(dir, "sentinel.log"),
			[]string{conf, "--sentinel", "--loglevel", "notice"}); err != nil {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: n.addr, MaxRetries: -1, DialTimeout: time.Second})
		err = waitPing(n, deadline, func(ctx context.Context) error { return c.Ping(ctx).Err() })
		c.Close()
		if err == nil {
			return n, nil
		}
		n.kill()
	}
	return nil, err
}

// startNode starts redis-server with args, logging to logPath.
func startNode(addr, logPath string, args []string) (*node, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create redis-server log: %w", err)
	}
	defer log.Close()
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	n := &node{addr: addr, logPath: logPath, proc: cmd.Process, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(n.exited) }()
	return n, nil
}

// waitPing polls ping until it succeeds, the process exits or the deadline
// passes.
func waitPing(n *node, deadline time.Time, ping func(context.Context) error) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("redis-server on %s exited early: %s", n.addr, n.log())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING in time: %v; output: %s", n.addr, err, n.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLinkUp waits until the replica r reports its link to the primary up,
// the primary lists it as online, and it acknowledges a write (WAIT): after
// a full sync the primary holds the command stream back until the
// replica's first acknowledgement, up to a second later.
func (s *Sentinel) waitLinkUp(r *node, deadline time.Time) error {
	rc := redis.NewClient(&redis.Options{Addr: r.addr, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	pc := redis.NewClient(&redis.Options{Addr: s.primary.addr, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer pc.Close()
	_, rport, _ := net.SplitHostPort(r.addr)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rinfo, err1 := rc.Info(ctx, "replication").Result()
		pinfo, err2 := pc.Info(ctx, "replication").Result()
		cancel()
		up := err1 == nil && infoFields(rinfo)["master_link_status"] == "up"
		online := false
		if err2 == nil {
			for k, v := range infoFields(pinfo) {
				if strings.HasPrefix(k, "slave") && strings.Contains(v, "port="+rport+",") && strings.Contains(v, "state=online") {
					online = true
				}
			}
		}
		if up && online {
			if err := waitAck(pc, deadline); err != nil {
				return fmt.Errorf("replica %s: %w; log: %s", r.addr, err, r.log())
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s not in sync with %s in time (%v, %v):\nreplica: %s\nprimary: %s\nreplica log: %s",
				r.addr, s.primary.addr, err1, err2, rinfo, pinfo, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAck writes a short-lived key on the primary and waits until a
// replica acknowledges it.
func waitAck(pc *redis.Client, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conn := pc.Conn() // WAIT counts the writes of its own connection
	defer conn.Close()
	if err := conn.Set(ctx, "redistest:ack", "1", time.Second).Err(); err != nil {
		return err
	}
	for {
		n, err := conn.Wait(ctx, 1, 100*time.Millisecond).Result()
		if err == nil && n >= 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no replica acknowledged a write in time (%v)", err)
		}
	}
}

// waitSentinelSeesReplica waits until every Sentinel reports the primary
// as a healthy master and the replica as a healthy replica with its link
// up: then it can promote the replica.
func (s *Sentinel) waitSentinelSeesReplica(deadline time.Time) error {
	for _, sn := range s.sentinel {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.addr, MaxRetries: -1, DialTimeout: time.Second})
		defer c.Close()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			master, err := c.Master(ctx, s.MasterName).Result()
			var replicas []map[string]string
			if err == nil {
				replicas, err = c.Replicas(ctx, s.MasterName).Result()
			}
			cancel()
			ok := err == nil && master["flags"] == "master"
			seen := false
			for _, r := range replicas {
				if net.JoinHostPort(r["ip"], r["port"]) == s.replica.addr && r["flags"] == "slave" &&
					r["master-link-status"] == "ok" {
					seen = true
				}
			}
			if ok && seen {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Sentinel %s does not see the replica %s in time: %v; master %v; replicas %v\nlog: %s",
					sn.addr, s.replica.addr, err, master, replicas, sn.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// sentinelMasterAddr asks a Sentinel for the primary's address.
func sentinelMasterAddr(addr, name string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := c.GetMasterAddrByName(ctx, name).Result()
	if err != nil {
		return "", fmt.Errorf("Sentinel %s: %w", addr, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("Sentinel %s: master address %v", addr, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// infoFields splits INFO's "key:value" lines.
func infoFields(info string) map[string]string { return parseInfo(info) }
