package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// provisionError validates and provisions a moserver block with a memory
// store and one client, changed by mod, and returns the error it fails with
// (nil if it loads; it is then cleaned up).
func provisionError(t *testing.T, mod func(*Handler)) error {
	t.Helper()
	h := &Handler{
		Issuer:     "https://wp.example/wp-json/moserver",
		StorageRaw: (&StorageConfig{Type: "memory"}).raw(),
		Clients:    []ClientConfig{{ID: "c", Secret: "client-secret"}},
	}
	mod(h)
	if err := h.Validate(); err != nil {
		return err
	}
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		return err
	}
	if err := h.Cleanup(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	return nil
}

// No configuration error shows a password of a storage URL or of the
// WordPress DSN, not even a part of one that the parser cut off at an
// unescaped "/", and each still names its option and says what is wrong.
func TestConfigErrorsHideCredentials(t *testing.T) {
	t.Setenv("MOSERVER_TEST_REDIS_PASSWORD", "from-the-env-9f3a")
	storage := func(kind, url string) func(*Handler) {
		return func(h *Handler) { h.StorageRaw = (&StorageConfig{Type: kind, URL: url}).raw() }
	}
	wp := func(dsn string) func(*Handler) {
		return func(h *Handler) { h.WordPress = &WordPressConfig{DSN: dsn} }
	}
	for _, tc := range []struct {
		name    string
		mod     func(*Handler)
		secrets []string // none of these may appear
		want    []string // all of these must
	}{
		{"redis, bad port", storage("redis", "redis://:hunter2@redis.example:notaport/0"),
			[]string{"hunter2"}, []string{"storage redis:", "port", "notaport"}},
		{"redis, placeholder password, bad port", storage("redis", "redis://app:{env.MOSERVER_TEST_REDIS_PASSWORD}@redis.example:notaport/0"),
			[]string{"from-the-env-9f3a"}, []string{"storage redis:", "notaport"}},
		{"redis, unescaped / in the password", storage("redis", "redis://app:s3cr/et-pw-77@redis.example:6379/0"),
			[]string{"s3cr", "et-pw-77"}, []string{"storage redis:", "user", "password"}},
		{"redis, bad escape in the password", storage("redis", "redis://:hunt%zzer2@redis.example:6379/0"),
			[]string{"hunt", "zzer2"}, []string{"storage redis:", "password"}},
		{"redis_cluster, bad port", storage("redis_cluster", "redis://app:hunter2@h1:notaport?addr=h2:7000"),
			[]string{"hunter2"}, []string{"storage redis_cluster:", "notaport"}},
		{"redis_cluster, unescaped / in the password", storage("redis_cluster", "redis://app:s3cr/et-pw-77@h1:7000?addr=h2:7000"),
			[]string{"s3cr", "et-pw-77"}, []string{"storage redis_cluster:", "password"}},
		{"redis_sentinel, unescaped / in the password", storage("redis_sentinel", "redis://app:s3cr/et-pw-77@s1:26379/0?master_name=m"),
			[]string{"s3cr", "et-pw-77"}, []string{"storage redis_sentinel:", "password"}},
		{"redis_sentinel, Sentinel password and a bad option", storage("redis_sentinel", "redis://:server-pw-1@s1/0?master_name=m&sentinel_password=sentinel-pw-2&dial_timeout=soon"),
			[]string{"server-pw-1", "sentinel-pw-2"}, []string{"storage redis_sentinel:", "dial_timeout"}},
		{"wordpress, unterminated address", wp("wordpress:hunter2@tcp(127.0.0.1:3306/wordpress"),
			[]string{"hunter2"}, []string{"wordpress", "DSN", "not terminated"}},
		{"wordpress, no @", wp("wordpress:hunter2/wordpress"),
			[]string{"hunter2"}, []string{"wordpress", "DSN", "network"}},
		{"wordpress, unescaped / in the password", wp("wordpress:s3cr/et-pw-77@tcp(127.0.0.1:3306)wordpress"),
			[]string{"s3cr", "et-pw-77"}, []string{"wordpress", "DSN", "slash"}},
	} {
		err := provisionError(t, tc.mod)
		if err == nil {
			t.Errorf("%s: loaded", tc.name)
			continue
		}
		msg := err.Error()
		for _, s := range tc.secrets {
			if strings.Contains(msg, s) {
				t.Errorf("%s: the error shows %q: %s", tc.name, s, msg)
			}
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the error does not say %q: %s", tc.name, w, msg)
			}
		}
		t.Logf("%s: %s", tc.name, msg)
	}
}

// A client whose secret is empty is refused when the configuration loads,
// whether the secret is given plainly (through a placeholder that expands
// to nothing) or as the SHA-256 of the empty string; the error names it.
func TestEmptyClientSecretRefused(t *testing.T) {
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	t.Setenv("MOSERVER_TEST_EMPTY", "")
	t.Setenv("MOSERVER_TEST_EMPTY_SHA256", emptySHA256)
	for name, cc := range map[string]ClientConfig{
		"secret through an empty placeholder": {ID: "empty-app", Secret: "{env.MOSERVER_TEST_EMPTY}"},
		"secret_sha256 of the empty string":   {ID: "empty-app", SecretSHA256: emptySHA256},
		"secret_sha256 in capitals":           {ID: "empty-app", SecretSHA256: strings.ToUpper(emptySHA256)},
		"secret_sha256 through a placeholder": {ID: "empty-app", SecretSHA256: "{env.MOSERVER_TEST_EMPTY_SHA256}"},
	} {
		err := provisionError(t, func(h *Handler) { h.Clients = []ClientConfig{cc} })
		if err == nil || !strings.Contains(err.Error(), `client "empty-app"`) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%s: got %v, want an error naming the client and the empty secret", name, err)
		}
	}
}
