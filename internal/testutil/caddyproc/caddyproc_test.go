package caddyproc

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 5 {
		p := FreePort(t)
		if p <= 0 || p > 65535 {
			t.Fatalf("FreePort() = %d, want a valid TCP port", p)
		}
		seen[p] = true
		// The port must actually be bindable now.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("FreePort() = %d, but listening on it failed: %v", p, err)
		}
		l.Close()
	}
	if len(seen) < 2 {
		t.Errorf("FreePort returned the same port 5 times: %v", seen)
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"go.mod", "xcaddy.sh"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("RepoRoot() = %s, which has no %s: %v", root, f, err)
		}
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(root, "internal", "testutil", "caddyproc"); wd != want {
		t.Errorf("RepoRoot() = %s, but the test runs in %s (want %s)", root, wd, want)
	}
}

func TestFindRepoRoot(t *testing.T) {
	tmp := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(tmp, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("repo/go.mod", "// comment\nmodule "+ModulePath+" // trailing\n\ngo 1.26\n")
	write("repo/a/b/c/x.go", "package c\n")
	// A nested module with another path (e.g. under testdata) must be skipped.
	write("repo/a/testdata/mod/go.mod", "module example.com/other\n")
	write("repo/a/testdata/mod/sub/x.go", "package sub\n")
	write("elsewhere/go.mod", "module example.com/elsewhere\n")

	want := filepath.Join(tmp, "repo")
	for _, start := range []string{"repo", "repo/a/b/c", "repo/a/testdata/mod/sub"} {
		got, err := findRepoRoot(filepath.Join(tmp, start))
		if err != nil || got != want {
			t.Errorf("findRepoRoot(%s) = %q, %v; want %q", start, got, err, want)
		}
	}
	if got, err := findRepoRoot(filepath.Join(tmp, "elsewhere")); err == nil {
		t.Errorf("findRepoRoot(elsewhere) = %q, want an error", got)
	}
}

func TestGoModPath(t *testing.T) {
	for in, want := range map[string]string{
		"module example.com/a\n":                   "example.com/a",
		"// x\n\nmodule\t\"example.com/b\" // c\n": "example.com/b",
		"modulex example.com/c\n":                  "",
		"go 1.26\n":                                "",
	} {
		if got := goModPath([]byte(in)); got != want {
			t.Errorf("goModPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrepareCaddyfile(t *testing.T) {
	port := func() int { return 4242 }
	tests := []struct {
		name, in   string
		wantAdmin  string
		wantHas    []string
		wantSame   bool
		wantPrefix string
	}{
		{
			name:       "no global block",
			in:         "http://127.0.0.1:8080 {\n\trespond ok\n}\n",
			wantAdmin:  "localhost:4242",
			wantPrefix: "{\n\tadmin localhost:4242\n\tskip_install_trust\n}\n\nhttp://127.0.0.1:8080 {",
		},
		{
			name:      "global block without admin",
			in:        "# c\n{\n\tdebug\n\tservers {\n\t\tprotocols h1\n\t}\n}\n:8080 {\n\trespond ok\n}\n",
			wantAdmin: "localhost:4242",
			wantHas:   []string{"{\n\tadmin localhost:4242\n\tskip_install_trust\n\tdebug\n"},
		},
		{
			name:      "admin and skip present",
			in:        "{\n\tadmin 127.0.0.1:9999 {\n\t\torigins x\n\t}\n\tskip_install_trust\n}\n:8080\n",
			wantAdmin: "127.0.0.1:9999",
			wantSame:  true,
		},
		{
			name:      "admin off",
			in:        "{\n\tadmin off\n}\n:8080\n",
			wantAdmin: "",
			wantHas:   []string{"{\n\tskip_install_trust\n\tadmin off\n}"},
		},
		{
			name:      "admin in a nested block does not count",
			in:        "{\n\tservers {\n\t\tadmin foo\n\t}\n}\n",
			wantAdmin: "localhost:4242",
			wantHas:   []string{"\tadmin localhost:4242\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, admin, err := prepareCaddyfile(tc.in, port)
			if err != nil {
				t.Fatal(err)
			}
			if admin != tc.wantAdmin {
				t.Errorf("admin = %q, want %q", admin, tc.wantAdmin)
			}
			if tc.wantSame && out != tc.in {
				t.Errorf("Caddyfile changed:\n%s", out)
			}
			if tc.wantPrefix != "" && !strings.HasPrefix(out, tc.wantPrefix) {
				t.Errorf("output does not start with %q:\n%s", tc.wantPrefix, out)
			}
			for _, s := range tc.wantHas {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
	if _, _, err := prepareCaddyfile("{\n\tdebug\n", port); err == nil {
		t.Error("unterminated global block: want an error")
	}
	out, admin, err := prepareCaddyfileWithAdmin(":8080\n", "localhost:1111")
	if err != nil || admin != "localhost:1111" || !strings.Contains(out, "admin localhost:1111") {
		t.Errorf("prepareCaddyfileWithAdmin = %q, %q, %v", out, admin, err)
	}
}

func TestBuildEnv(t *testing.T) {
	env := buildEnv([]string{"PATH=/bin", "HOME=/root", "XDG_DATA_HOME=/real"}, "/tmp/x",
		[]string{"XDG_DATA_HOME=/shared", "FOO=1", "FOO=2"})
	got := map[string]string{}
	count := map[string]int{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
		count[k]++
	}
	want := map[string]string{
		"PATH":            "/bin",
		"HOME":            "/tmp/x/home",
		"XDG_DATA_HOME":   "/shared",
		"XDG_CONFIG_HOME": "/tmp/x/xdg-config",
		"XDG_CACHE_HOME":  "/tmp/x/xdg-cache",
		"FOO":             "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("%s appears %d times", k, n)
		}
	}
}

func TestTailLines(t *testing.T) {
	if got := tailLines("a\nb\nc\n", 5); got != "a\nb\nc" {
		t.Errorf("tailLines short = %q", got)
	}
	if got := tailLines("a\nb\nc\nd\n", 2); got != "[... 2 earlier lines omitted ...]\nc\nd" {
		t.Errorf("tailLines long = %q", got)
	}
}
