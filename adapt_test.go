package moserver

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"      // php_fastcgi, respond, ...
)

var update = flag.Bool("update", false, "rewrite the JSON of the golden adapt files (testdata/adapt) and add the documentation's examples")

// goldenSep separates a golden file's Caddyfile from the JSON it adapts to,
// as in Caddy's own caddyfile_adapt tests.
const goldenSep = "\n----------\n"

// golden is one testdata/adapt/*.caddyfiletest file.
type golden struct {
	path, caddyfile, json string
}

func readGoldens(t *testing.T) []golden {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfiletest"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden files in testdata/adapt (%v)", err)
	}
	var out []golden
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cf, js, _ := strings.Cut(string(b), goldenSep)
		out = append(out, golden{path: p, caddyfile: strings.TrimSpace(cf) + "\n", json: strings.TrimSpace(js)})
	}
	return out
}

// adapt turns a Caddyfile into indented JSON, failing on any warning.
func adapt(caddyfile string) (string, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	raw, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return "", err
	}
	if len(warnings) > 0 {
		return "", fmt.Errorf("warnings: %v", warnings)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "\t"); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// TestCaddyfileAdapt adapts every golden Caddyfile and compares the JSON
// with the golden one (go test -run TestCaddyfileAdapt -update rewrites it).
func TestCaddyfileAdapt(t *testing.T) {
	for _, g := range readGoldens(t) {
		got, err := adapt(g.caddyfile)
		if err != nil {
			t.Errorf("%s: %v", g.path, err)
			continue
		}
		if *update {
			if err := os.WriteFile(g.path, []byte(g.caddyfile+strings.TrimPrefix(goldenSep, "\n")+got+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got != g.json {
			t.Errorf("%s: caddy adapt gives\n%s\nwant\n%s\n(go test -run TestCaddyfileAdapt -update rewrites the golden files)", g.path, got, g.json)
		}
	}
}

var caddyfileBlock = regexp.MustCompile("(?s)```caddyfile\n(.*?)```")

// TestDocumentedCaddyfilesAreGolden: every complete Caddyfile example of
// the README, docs/ and Caddyfile.example is one of the golden files, so the
// documentation cannot drift from the parser. (Fragments, with "...", are
// not complete Caddyfiles.)
func TestDocumentedCaddyfilesAreGolden(t *testing.T) {
	have := map[string]bool{}
	for _, g := range readGoldens(t) {
		have[g.caddyfile] = true
	}
	docs, _ := filepath.Glob(filepath.Join("docs", "*.md"))
	docs = append(docs, "README.md")
	var examples []string
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range caddyfileBlock.FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(m[1], "...") {
				examples = append(examples, strings.TrimSpace(m[1])+"\n")
			}
		}
	}
	example, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	examples = append(examples, strings.TrimSpace(string(example))+"\n")
	if len(examples) < 3 {
		t.Fatalf("found %d documented Caddyfiles; the README has several", len(examples))
	}
	for i, ex := range examples {
		if have[ex] {
			continue
		}
		if *update {
			p := filepath.Join("testdata", "adapt", fmt.Sprintf("documented-%d.caddyfiletest", i+1))
			if err := os.WriteFile(p, []byte(ex), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("added %s; run -update again to write its JSON", p)
			continue
		}
		t.Errorf("a documented Caddyfile is not among testdata/adapt (go test -run 'Adapt|Documented' -update adds it):\n%s", ex)
	}
}
