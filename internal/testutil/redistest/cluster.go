package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodes is the number of masters StartCluster creates.
const clusterNodes = 3

// clusterTimeout bounds how long a cluster may take to come up: servers
// answering PING, `redis-cli --cluster create`, and every node reporting
// cluster_state:ok with all slots covered.
const clusterTimeout = 30 * time.Second

// StartCluster starts a private Redis Cluster of three masters (no
// replicas) on free loopback ports, without persistence, and returns their
// host:port addresses. It returns once every node reports cluster_state:ok
// and sees all 16384 slots served by the three masters, and stops the
// servers in t.Cleanup. It fails the test if redis-server or redis-cli is
// not installed or if the cluster does not come up within 30 s.
//
// Each node also gets an explicitly chosen free cluster bus port, so that a
// client port above 55535 (whose default bus port, port+10000, would be out
// of range) or a bus port taken by another process cannot break startup.
func StartCluster(t testing.TB) (addrs []string) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("redistest: %s not found on PATH (%v); install it with `apt-get install -y redis-server redis-tools`", bin, err)
		}
	}
	dir := t.TempDir()
	start := time.Now()
	deadline := start.Add(clusterTimeout)
	nodes := make([]*node, 0, clusterNodes)
	t.Cleanup(func() {
		for _, n := range nodes {
			n.kill()
		}
	})
	for len(nodes) < clusterNodes {
		var err error
		var n *node
		for range 3 { // a free port can be taken before redis binds it
			if n, err = startClusterNode(dir, deadline); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("redistest: cluster: %v", err)
		}
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	if err := createCluster(addrs, deadline); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	if err := waitClusterOK(addrs, deadline); err != nil {
		t.Fatalf("redistest: cluster: %v", err)
	}
	t.Logf("redistest: Redis Cluster %v ready in %v", addrs, time.Since(start).Round(time.Millisecond))
	return addrs
}

// startClusterNode starts a cluster-enabled redis-server on a free loopback
// port (with a free bus port) and waits until it answers PING.
func startClusterNode(dir string, deadline time.Time) (*node, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	busPort, err := freePort()
	if err != nil {
		return nil, err
	}
	if busPort == port {
		return nil, errors.New("the same free port was returned twice")
	}
	p := strconv.Itoa(port)
	n, err := startNode(net.JoinHostPort("127.0.0.1", p), filepath.Join(dir, "redis-"+p+".log"), []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes-"+p+".conf"),
		"--cluster-port", strconv.Itoa(busPort),
		"--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning"})
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: n.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	if err := waitPing(n, deadline, func(ctx context.Context) error { return c.Ping(ctx).Err() }); err != nil {
		n.kill()
		return nil, err
	}
	return n, nil
}

// createCluster runs `redis-cli --cluster create` on the nodes, which
// assigns the slots evenly and makes the nodes meet.
func createCluster(addrs []string, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = strings.NewReader("yes\n") // in case --cluster-yes is ignored
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("redis-cli %s: %v; output:\n%s", strings.Join(args, " "), err, out.String())
	}
	// redis-cli exits 0 on some errors; it always prints this on success.
	if !strings.Contains(out.String(), "All 16384 slots covered") {
		return fmt.Errorf("redis-cli %s did not report all slots covered; output:\n%s", strings.Join(args, " "), out.String())
	}
	return nil
}

// waitClusterOK polls every node until each reports cluster_state:ok, all
// 16384 slots assigned and ok, and knows all the nodes.
func waitClusterOK(addrs []string, deadline time.Time) error {
	clients := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second})
		defer clients[i].Close()
	}
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_slots_ok":       "16384",
		"cluster_known_nodes":    strconv.Itoa(len(addrs)),
		"cluster_size":           strconv.Itoa(len(addrs)),
	}
	for {
		var problem error
		for i, c := range clients {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := c.ClusterInfo(ctx).Result()
			cancel()
			if err != nil {
				problem = fmt.Errorf("CLUSTER INFO on %s: %w", addrs[i], err)
				break
			}
			fields := parseInfo(info)
			for k, v := range want {
				if fields[k] != v {
					problem = fmt.Errorf("%s reports %s:%s, want %s; CLUSTER INFO:\n%s", addrs[i], k, fields[k], v, info)
					break
				}
			}
			if problem != nil {
				break
			}
		}
		if problem == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready in time: %w", problem)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parseInfo splits CLUSTER INFO's "key:value" lines.
func parseInfo(info string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}
