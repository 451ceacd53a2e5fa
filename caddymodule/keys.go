package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-moserver/caddy-moserver/internal/tokens"
)

// generatedKeyName is where the generated signing key lives in Caddy's
// storage, so restarts and instances sharing that storage keep one key.
const generatedKeyName = "moserver/signing-key-es256.pem"

// loadSigner reads the configured keys, or the generated one when none is
// configured.
func loadSigner(ctx caddy.Context, cfgs []SigningKeyConfig, repl *caddy.Replacer, log *zap.Logger) (*tokens.Signer, error) {
	var keys []*tokens.Key
	for _, kc := range cfgs {
		path := repl.ReplaceKnown(kc.File, "")
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("signing_key: %w", err)
		}
		k, err := tokens.ParseKey(data, kc.KID)
		if err != nil {
			return nil, fmt.Errorf("signing_key %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		k, err := generatedKey(ctx, log)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	signer, err := tokens.NewSigner(keys)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return signer, nil
}

// generatedKey loads the ES256 key kept in Caddy's storage, generating and
// storing it on first use. A storage lock keeps two instances starting at
// once from generating two keys.
func generatedKey(ctx caddy.Context, log *zap.Logger) (*tokens.Key, error) {
	st := ctx.Storage()
	if err := st.Lock(ctx, generatedKeyName); err != nil {
		return nil, fmt.Errorf("locking the signing key in storage: %w", err)
	}
	defer func() {
		if err := st.Unlock(context.Background(), generatedKeyName); err != nil {
			log.Error("unlocking the signing key in storage", zap.Error(err))
		}
	}()
	data, err := st.Load(ctx, generatedKeyName)
	if err == nil {
		k, err := tokens.ParseKey(data, "")
		if err != nil {
			return nil, fmt.Errorf("the signing key in storage (%s): %w", generatedKeyName, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("loading the signing key from storage: %w", err)
	}
	k, pemBytes, err := tokens.GenerateES256()
	if err != nil {
		return nil, fmt.Errorf("generating a signing key: %w", err)
	}
	if err := st.Store(ctx, generatedKeyName, pemBytes); err != nil {
		return nil, fmt.Errorf("keeping the generated signing key in storage: %w", err)
	}
	log.Info("generated an ES256 signing key and kept it in Caddy's storage", zap.String("kid", k.KID), zap.String("storage_key", generatedKeyName))
	return k, nil
}
