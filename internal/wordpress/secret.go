package wordpress

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrEmptyClientName is returned by DecodeSecret for a client without a
// name: the name is the obfuscation key, and the plugin's own behaviour for
// it is not usable (it stores and returns the literal string "false").
var ErrEmptyClientName = errors.New("wordpress: client has no name, its secret cannot be decoded")

// EncodeSecret obfuscates a client secret the way the plugin stores it in
// moos_oauth_clients.client_secret: base64 of the bytes
// (secret[i] + clientName[i mod len(clientName)]) mod 256. Like the plugin,
// it returns the literal "false" for an empty client name.
func EncodeSecret(secret, clientName string) string {
	if clientName == "" {
		return "false"
	}
	b := []byte(secret)
	for i := range b {
		b[i] += clientName[i%len(clientName)]
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeSecret reverses EncodeSecret. The error never contains the stored
// value or the secret.
func DecodeSecret(stored, clientName string) (string, error) {
	if clientName == "" {
		return "", ErrEmptyClientName
	}
	stored = strings.TrimSpace(stored)
	b, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		// PHP's base64_decode also accepts a missing padding.
		var err2 error
		if b, err2 = base64.RawStdEncoding.DecodeString(strings.TrimRight(stored, "=")); err2 != nil {
			return "", fmt.Errorf("wordpress: stored client secret is not base64: %w", err)
		}
	}
	for i := range b {
		b[i] -= clientName[i%len(clientName)]
	}
	return string(b), nil
}
