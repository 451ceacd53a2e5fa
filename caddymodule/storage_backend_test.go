package caddymodule

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-moserver/caddy-moserver/internal/store"
)

// countingBackend is a storage backend a third party could build in with
// xcaddy: a module in the moserver.storage namespace with a setting of its
// own, here over a memory store the test can read.
type countingBackend struct {
	StorageSettings
	Label string `json:"label,omitempty"`

	st *store.Memory
}

var backendOpened atomic.Pointer[countingBackend]

func init() { caddy.RegisterModule(new(countingBackend)) }

func (*countingBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "moserver.storage.test_counting", New: func() caddy.Module { return new(countingBackend) }}
}

func (b *countingBackend) OpenStore(caddy.Context) (store.Store, error) {
	b.st = store.NewMemory()
	backendOpened.Store(b)
	return b.st, nil
}

// A backend registered by another package is chosen by its name in the
// storage object, gets its own settings and serves the block's tokens.
func TestThirdPartyStorageBackend(t *testing.T) {
	h, _ := opsProvisionHandler(t, "https://backend.example/wp-json/moserver", func(h *Handler) {
		h.StorageRaw = json.RawMessage(`{"type": "test_counting", "label": "mine", "key_prefix": "x:", "store_timeout": 300000000}`)
	})
	b := backendOpened.Load()
	if b == nil || b.Label != "mine" || b.KeyPrefix != "x:" || h.shared.storeTimeout != 300e6 {
		t.Fatalf("the backend was not loaded with its settings: %+v", b)
	}
	t.Cleanup(func() { _ = b.st.Close() })
	r := opsTokenRequest(t, h, opsCCForm())
	if r.status != http.StatusOK || r.refresh == "" {
		t.Fatalf("token through the third-party backend: %d %s", r.status, r.body)
	}
	if fams, err := b.st.ListFamilies(t.Context(), opsClientID, store.FamilyQuery{Limit: 10}); err != nil || len(fams.Families) != 1 {
		t.Fatalf("the refresh family is not in the backend's store: %+v, %v", fams, err)
	}
}
