package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-moserver/caddy-moserver/internal/loadtest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/admintest"
	"github.com/caddy-moserver/caddy-moserver/internal/testutil/caddyproc"
	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

const opsRevokePath = "/wp-json/moserver/revoke"

// runCaddyCLI runs the built binary with args (and stdin) and returns its
// standard output and error; a non-zero exit fails the test.
func opsRunCaddyCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(caddyproc.Binary(t), args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("caddy %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func opsCLIField(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s: line in:\n%s", name, out)
	}
	return m[1]
}

// opsScrape reads Caddy's admin /metrics and returns every sample (see
// loadtest.ParseMetrics for the keys).
func opsScrape(t *testing.T, adminAddr string) map[string]float64 {
	t.Helper()
	samples, err := loadtest.ScrapeMetrics(context.Background(), "http://"+adminAddr+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return samples
}

func opsWantSample(t *testing.T, samples map[string]float64, key string, want float64) {
	t.Helper()
	got, ok := samples[key]
	if !ok {
		var ours []string
		for k := range samples {
			if strings.HasPrefix(k, "moserver_") {
				ours = append(ours, k)
			}
		}
		sort.Strings(ours)
		t.Errorf("metric %s missing; moserver samples:\n%s", key, strings.Join(ours, "\n"))
		return
	}
	if got != want {
		t.Errorf("metric %s = %v, want %v", key, got, want)
	}
}

// admin calls Caddy's admin API over HTTP and decodes the JSON answer.
func opsAdmin(t *testing.T, adminAddr, method, path, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	r := send(t, req)
	if r.json == nil {
		t.Fatalf("%s %s: not a JSON answer: %d %q (Content-Type %q)", method, path, r.status, r.body, r.header.Get("Content-Type"))
	}
	return r
}

func opsWantAdminError(t *testing.T, r reply, status int, contains string) {
	t.Helper()
	if r.status != status || !strings.Contains(r.str("error"), contains) {
		t.Errorf("want %d with an error containing %q, got %d %s", status, contains, r.status, r.body)
	}
}

// TestOperations runs the operator's tools against the built binary: the CLI
// makes a client and signing keys that a real Caddy then uses, the token
// endpoint's metrics are scraped from Caddy's admin /metrics (also across a
// reload), the request log is checked, and the admin API revokes families and
// clients over HTTP.
func TestOperations(t *testing.T) {
	dir := t.TempDir()

	// CLI: client new.
	out, _ := opsRunCaddyCLI(t, "", "moserver", "client", "new", "--name", "Ops test")
	newID, newSecret, newSHA := opsCLIField(t, out, "client_id"), opsCLIField(t, out, "client_secret"), opsCLIField(t, out, "secret_sha256")
	if len(newID) != 32 || len(newSecret) < 32 || len(newSHA) != 64 {
		t.Fatalf("client new:\n%s", out)
	}
	i := strings.Index(out, "\tclient "+newID+" {")
	if i < 0 {
		t.Fatalf("no client block in:\n%s", out)
	}
	clientBlock := out[i:]
	if strings.Contains(clientBlock, newSecret) {
		t.Fatal("the Caddyfile block holds the secret")
	}

	// CLI: keygen for each algorithm; every key loads with ParseKey and has
	// the printed kid.
	kids := map[string]string{}
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		file := filepath.Join(dir, alg+".pem")
		out, _ := opsRunCaddyCLI(t, "", "moserver", "keygen", "--alg", alg, "--out", file)
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		key, err := tokens.ParseKey(data, "")
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if string(key.Alg) != alg || opsCLIField(t, out, "kid") != key.KID {
			t.Errorf("%s: key %s %s, printed:\n%s", alg, key.Alg, key.KID, out)
		}
		if !strings.Contains(out, "signing_key "+file) {
			t.Errorf("%s: no signing_key line:\n%s", alg, out)
		}
		kids[alg] = key.KID
	}
	pemOut, info := opsRunCaddyCLI(t, "", "moserver", "keygen")
	if key, err := tokens.ParseKey([]byte(pemOut), ""); err != nil || key.Alg != tokens.ES256 || opsCLIField(t, info, "kid") != key.KID {
		t.Errorf("keygen to stdout: %v\nstdout:\n%s\nstderr:\n%s", err, pemOut, info)
	}

	// A Caddy that signs with the EdDSA key (the ES256 one listed after it),
	// with the CLI's client, logging every token request at INFO.
	options := fmt.Sprintf("log_requests\n\t\tsigning_key %s\n\t\tsigning_key %s\n%s",
		filepath.Join(dir, "EdDSA.pem"), filepath.Join(dir, "ES256.pem"), clientBlock)
	up := newUpstream(t)
	s := startSite(t, options, up.URL)
	if s.AdminAddr == "" {
		t.Fatal("no admin address")
	}

	// Token requests of every kind.
	first := mustToken(t, s.form(t, tokenPath, ccValues()))
	at, rt := first.str("access_token"), first.str("refresh_token")
	if headerKid(t, at) != kids["EdDSA"] {
		t.Errorf("token kid %s, want the EdDSA key's %s", headerKid(t, at), kids["EdDSA"])
	}
	bad := ccValues()
	bad.Set("client_secret", "wrong")
	mustError(t, s.form(t, tokenPath, bad), 401, "invalid_client")
	rt2 := mustToken(t, s.form(t, tokenPath, refreshValues(rt))).str("refresh_token")
	rt2 = mustToken(t, s.form(t, tokenPath, refreshValues(rt2))).str("refresh_token")
	mustError(t, s.form(t, tokenPath, refreshValues(rt)), 400, "invalid_grant") // replay: family revoked
	if r := s.form(t, tokenPath, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}); r.header.Get("X-Upstream") != "php" {
		t.Fatalf("authorization_code was not passed through: %d %s", r.status, r.body)
	}
	// The CLI's client authenticates with its secret.
	mustToken(t, s.form(t, tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {newID}, "client_secret": {newSecret}}))
	third := mustToken(t, s.form(t, tokenPath, ccValues()))
	if r := s.form(t, opsRevokePath, url.Values{"token": {third.str("refresh_token")}, "client_id": {clientID}, "client_secret": {clientSecret}}); r.status != 200 {
		t.Fatalf("revocation: %d %s", r.status, r.body)
	}
	_ = rt2

	// Metrics on Caddy's admin /metrics.
	m := opsScrape(t, s.AdminAddr)
	opsWantSample(t, m, `moserver_token_requests_total{grant="client_credentials",outcome="issued"}`, 3)
	opsWantSample(t, m, `moserver_token_requests_total{grant="client_credentials",outcome="invalid_client"}`, 1)
	opsWantSample(t, m, `moserver_token_requests_total{grant="refresh_token",outcome="issued"}`, 2)
	opsWantSample(t, m, `moserver_token_requests_total{grant="refresh_token",outcome="invalid_grant"}`, 1)
	opsWantSample(t, m, `moserver_token_request_duration_seconds_count{grant="client_credentials"}`, 4)
	opsWantSample(t, m, `moserver_token_request_duration_seconds_count{grant="refresh_token"}`, 3)
	opsWantSample(t, m, `moserver_revocations_total{outcome="revoked"}`, 1)
	opsWantSample(t, m, `moserver_refresh_replays_total`, 1)
	opsWantSample(t, m, `moserver_families_revoked_total`, 2) // the replay and the revocation
	opsWantSample(t, m, `moserver_passthrough_total`, 1)
	opsWantSample(t, m, `moserver_rate_limited_total`, 0)
	opsWantSample(t, m, `moserver_store_errors_total`, 0)
	// The same registry as Caddy's own metrics.
	opsWantSample(t, m, `caddy_config_last_reload_successful`, 1)

	// The request log: INFO lines with the client id, grant, outcome and
	// duration, and never a secret or a token.
	logs := s.Logs()
	var infoLines int
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `"msg":"token request"`) {
			if !strings.Contains(line, `"level":"info"`) || !strings.Contains(line, `"grant_type":`) ||
				!strings.Contains(line, `"outcome":`) || !strings.Contains(line, `"duration":`) {
				t.Errorf("token request line: %s", line)
			}
			if strings.Contains(line, `"client_id":"`+clientID+`"`) {
				infoLines++
			}
		}
	}
	if infoLines < 3 {
		t.Errorf("%d INFO token request lines for %s in the logs:\n%s", infoLines, clientID, logs)
	}
	for _, secret := range []string{clientSecret, newSecret, at, rt, rt2} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs hold a secret or token (%.8s...)", secret)
		}
	}
	if !strings.Contains(logs, "refresh token replay") {
		t.Errorf("no replay warning in the logs")
	}

	// Admin API: keys.
	keys := opsAdmin(t, s.AdminAddr, "GET", "/moserver/keys", "")
	if keys.status != 200 || keys.str("signing_kid") != kids["EdDSA"] || keys.str("signing_alg") != "EdDSA" ||
		keys.str("issuer") != s.base+"/wp-json/moserver" {
		t.Fatalf("GET /moserver/keys: %d %s", keys.status, keys.body)
	}
	var published []string
	for _, k := range keys.json["keys"].([]any) {
		published = append(published, k.(map[string]any)["kid"].(string))
	}
	if strings.Join(published, ",") != kids["EdDSA"]+","+kids["ES256"] {
		t.Errorf("published kids %v, want EdDSA then ES256", published)
	}
	if r := opsAdmin(t, s.AdminAddr, "GET", "/moserver/keys?issuer="+url.QueryEscape(s.base+"/wp-json/moserver"), ""); r.status != 200 {
		t.Errorf("keys by issuer: %d %s", r.status, r.body)
	}
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "GET", "/moserver/keys?issuer=https://nope.example", ""), 404, "no moserver block has issuer")

	// Admin API: revoke one family; another family of the client lives on.
	a := mustToken(t, s.form(t, tokenPath, ccValues())).str("refresh_token")
	b := mustToken(t, s.form(t, tokenPath, ccValues())).str("refresh_token")
	fid, ok := tokens.ParseRefresh(a)
	if !ok {
		t.Fatal("refresh token does not parse")
	}
	r := opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-family", `{"family_id":"`+fid+`"}`)
	if r.status != 200 || r.str("family_id") != fid || r.json["revoked"] != true {
		t.Fatalf("revoke-family: %d %s", r.status, r.body)
	}
	mustError(t, s.form(t, tokenPath, refreshValues(a)), 400, "invalid_grant")
	b2 := mustToken(t, s.form(t, tokenPath, refreshValues(b))).str("refresh_token")
	_, unknown := tokens.NewFamilyToken()
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-family", `{"family_id":"`+unknown+`"}`), 404, "no live family")
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-family", `{"family":"x"}`), 400, "unknown field")
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "GET", "/moserver/revoke-family", ""), 405, "use POST")

	// Admin API: revoke everything of the client; its old refresh token
	// fails, another client is untouched.
	other := mustToken(t, s.form(t, tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {newID}, "client_secret": {newSecret}}))
	r = opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-client", `{"client_id":"`+clientID+`"}`)
	if r.status != 200 || r.str("client_id") != clientID || r.str("keep") != (14*24*time.Hour).String() {
		t.Fatalf("revoke-client: %d %s", r.status, r.body)
	}
	mustError(t, s.form(t, tokenPath, refreshValues(b2)), 400, "invalid_grant")
	intro := s.form(t, "/wp-json/moserver/introspect", url.Values{"token": {other.str("access_token")}, "client_id": {newID}, "client_secret": {newSecret}})
	if intro.status != 200 || intro.json["active"] != true {
		t.Errorf("another client's token after revoke-client: %d %s", intro.status, intro.body)
	}
	r = opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-client", `{"issuer":"`+s.base+`/wp-json/moserver","client_id":"`+newID+`","keep":"2h"}`)
	if r.status != 200 || r.str("keep") != "2h0m0s" {
		t.Fatalf("revoke-client with keep: %d %s", r.status, r.body)
	}
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-client", `{}`), 400, "client_id is required")
	opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-client", `{"client_id":"x","keep":"forever"}`), 400, "keep")

	// The admin calls leave an audit trail.
	for _, want := range []string{`"logger":"admin.api.moserver","msg":"refresh family revoked through the admin API"`,
		`"logger":"admin.api.moserver","msg":"client's tokens revoked through the admin API"`} {
		if !strings.Contains(s.Logs(), want) {
			t.Errorf("logs lack %s", want)
		}
	}

	// Admin API: list the client's families. Every family above was revoked
	// by revoke-client; those issued from now on are live.
	time.Sleep(5 * time.Millisecond)
	opsCheckFamilies(t, s, []string{at, rt, rt2, a, b, b2, newSecret, clientSecret})
	if !strings.Contains(s.Logs(), `"logger":"admin.api.moserver","msg":"client's refresh families listed through the admin API"`) {
		t.Errorf("logs lack the families listing line")
	}

	// CLI: token decode of a real token, from an argument and from stdin.
	dec, _ := opsRunCaddyCLI(t, "", "moserver", "token", "decode", at)
	for _, want := range []string{"NOT VERIFIED", `"alg": "EdDSA"`, `"kid": "` + kids["EdDSA"] + `"`,
		`"client_id": "` + clientID + `"`, `"iss": "` + s.base + `/wp-json/moserver"`, "exp       20", "iat       20"} {
		if !strings.Contains(dec, want) {
			t.Errorf("token decode lacks %q:\n%s", want, dec)
		}
	}
	dec2, _ := opsRunCaddyCLI(t, at+"\n", "moserver", "token", "decode", "-")
	if !strings.Contains(dec2, "NOT VERIFIED") || !strings.Contains(dec2, `"client_id": "`+clientID+`"`) {
		t.Errorf("token decode from stdin:\n%s", dec2)
	}

	// Metrics survive a reload: the new configuration's registry shows the
	// same, still counting, collectors.
	before := opsScrape(t, s.AdminAddr)[`moserver_token_requests_total{grant="client_credentials",outcome="issued"}`]
	port, _ := strconv.Atoi(strings.TrimPrefix(s.base, "http://127.0.0.1:"))
	s.Reload(t, siteConfig(port, options+"\n\t\taccess_token_ttl 30m", up.URL))
	http.DefaultClient.CloseIdleConnections()
	mustToken(t, s.form(t, tokenPath, ccValues()))
	after := opsScrape(t, s.AdminAddr)
	opsWantSample(t, after, `moserver_token_requests_total{grant="client_credentials",outcome="issued"}`, before+1)
	if r := opsAdmin(t, s.AdminAddr, "GET", "/moserver/keys", ""); r.status != 200 {
		t.Errorf("keys after reload: %d %s", r.status, r.body)
	}
	if r := opsAdmin(t, s.AdminAddr, "GET", "/moserver/families?client_id="+clientID, ""); r.status != 200 || !strings.Contains(r.body, `"family_id"`) {
		t.Errorf("families after reload: %d %s", r.status, r.body)
	}
}

// TestOperationsFamiliesRedis lists families from the Redis store's
// per-client index through the built binary's admin API.
func TestOperationsFamiliesRedis(t *testing.T) {
	up := newUpstream(t)
	s := startSite(t, redisOption(t), up.URL)
	opsCheckFamilies(t, s, []string{clientSecret})
}

// opsFamilyIDs joins the family ids of fs with commas.
func opsFamilyIDs(fs []admintest.Family) string {
	return strings.Join(admintest.IDs(fs), ",")
}

// opsGetAdmin sends GETs to Caddy's admin API at adminAddr, for admintest.
func opsGetAdmin(t *testing.T, adminAddr string) admintest.Get {
	return func(path string) (int, string) {
		r := opsAdmin(t, adminAddr, "GET", path, "")
		return r.status, r.body
	}
}

// opsCheckFamilies issues five refresh families for the test client (which
// must have no other live family) and checks GET /moserver/families: paging
// across pages oldest first, each family once, no token in any answer, a
// family revoked through the admin API left out unless include_revoked, all
// of them revoked after revoke-client, and the refused requests.
func opsCheckFamilies(t *testing.T, s *site, secrets []string) {
	t.Helper()
	query := "client_id=" + clientID
	var ids, refreshes []string
	for range 5 {
		r := mustToken(t, s.form(t, tokenPath, ccValues()))
		fid, ok := tokens.ParseRefresh(r.str("refresh_token"))
		if !ok {
			t.Fatalf("refresh token does not parse: %s", r.body)
		}
		ids, refreshes = append(ids, fid), append(refreshes, r.str("refresh_token"))
		secrets = append(secrets, r.str("refresh_token"), r.str("access_token"))
		time.Sleep(3 * time.Millisecond) // creation order is issuance order
	}
	// A rotation keeps the family and its place.
	rotated := mustToken(t, s.form(t, tokenPath, refreshValues(refreshes[1])))
	secrets = append(secrets, rotated.str("refresh_token"), rotated.str("access_token"))
	want := strings.Join(ids, ",")

	admintest.CheckPages(t, opsGetAdmin(t, s.AdminAddr), query, ids, []int{1, 2, 5, 100}, secrets, func(f admintest.Family) bool {
		return f.Subject == clientID && f.Scope != "" && !f.Revoked
	})

	// One family revoked through the admin API.
	if r := opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-family", `{"family_id":"`+ids[2]+`"}`); r.status != 200 {
		t.Fatalf("revoke-family: %d %s", r.status, r.body)
	}
	live := strings.Join([]string{ids[0], ids[1], ids[3], ids[4]}, ",")
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t, s.AdminAddr), query, 2, secrets); opsFamilyIDs(got) != live {
		t.Errorf("after revoke-family: %s, want %s", opsFamilyIDs(got), live)
	}
	ours := func(fs []admintest.Family) []admintest.Family {
		var out []admintest.Family
		for _, f := range fs {
			if strings.Contains(want, f.FamilyID) {
				out = append(out, f)
			} else if !f.Revoked {
				t.Errorf("an unexpected live family: %+v", f)
			}
		}
		return out
	}
	got, _ := admintest.ListFamilies(t, opsGetAdmin(t, s.AdminAddr), query+"&include_revoked=true", 2, secrets)
	mine := ours(got)
	if opsFamilyIDs(mine) != want {
		t.Fatalf("include_revoked: %s, want %s", opsFamilyIDs(mine), want)
	}
	for i, f := range mine {
		if f.Revoked != (i == 2) {
			t.Errorf("include_revoked: family %d revoked %v", i, f.Revoked)
		}
	}

	// Refused requests, and a client with no families.
	for _, tc := range []struct {
		query, want string
		status      int
	}{
		{"", "client_id is required", 400},
		{"limit=5", "client_id is required", 400},
		{query + "&limit=0", "is not a whole number from 1 to 1000", 400},
		{query + "&limit=1001", "from 1 to 1000", 400},
		{query + "&limit=many", "from 1 to 1000", 400},
		{query + "&include_revoked=maybe", "include_revoked", 400},
		{query + "&after=" + ids[0], "is not a cursor", 400},
		{query + "&limt=5", "unknown query parameter", 400},
		{query + "&issuer=https://nope.example", "no moserver block has issuer", 404},
	} {
		opsWantAdminError(t, opsAdmin(t, s.AdminAddr, "GET", "/moserver/families?"+tc.query, ""), tc.status, tc.want)
	}
	r := opsAdmin(t, s.AdminAddr, "POST", "/moserver/families?"+query, "")
	opsWantAdminError(t, r, 405, "use GET")
	if r.header.Get("Allow") != "GET" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
	if r := opsAdmin(t, s.AdminAddr, "GET", "/moserver/families?client_id=removed-client&issuer="+url.QueryEscape(s.base+"/wp-json/moserver"), ""); r.status != 200 ||
		!strings.Contains(r.body, `"families": []`) || r.str("client_id") != "removed-client" {
		t.Errorf("a client with no families: %d %s", r.status, r.body)
	}

	// After revoke-client every family of the client counts as revoked.
	if r := opsAdmin(t, s.AdminAddr, "POST", "/moserver/revoke-client", `{"client_id":"`+clientID+`"}`); r.status != 200 {
		t.Fatalf("revoke-client: %d %s", r.status, r.body)
	}
	if got, _ := admintest.ListFamilies(t, opsGetAdmin(t, s.AdminAddr), query, 100, secrets); len(got) != 0 {
		t.Errorf("live families after revoke-client: %s", opsFamilyIDs(got))
	}
	got, _ = admintest.ListFamilies(t, opsGetAdmin(t, s.AdminAddr), query+"&include_revoked=true", 100, secrets)
	if mine := ours(got); opsFamilyIDs(mine) != want {
		t.Errorf("include_revoked after revoke-client: %s, want %s", opsFamilyIDs(mine), want)
	}
	if r := opsAdmin(t, s.AdminAddr, "GET", "/moserver/families?"+query, ""); r.str("revoked_before") == "" {
		t.Errorf("no revoked_before after revoke-client: %s", r.body)
	}
	time.Sleep(5 * time.Millisecond)
}

// TestOperationsLogRequestsOff: without log_requests the per-request line is
// DEBUG, which Caddy's default logger does not write.
func TestOperationsLogRequestsOff(t *testing.T) {
	up := newUpstream(t)
	s := startSite(t, "", up.URL)
	mustToken(t, s.form(t, tokenPath, ccValues()))
	mustError(t, s.form(t, tokenPath, refreshValues("x")), 400, "invalid_grant")
	if strings.Contains(s.Logs(), `"msg":"token request"`) {
		t.Errorf("a token request was logged at INFO without log_requests:\n%s", s.Logs())
	}
}
