package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// Refresh token layout: base64url (unpadded) of familyID || secret.
const (
	// FamilyIDBytes is the length of a refresh-token family id before encoding.
	FamilyIDBytes = 16
	// RefreshSecretBytes is the random secret part of a refresh token (256 bits).
	RefreshSecretBytes = 32
	// RefreshTokenLen is the length of an encoded refresh token: 64 characters.
	RefreshTokenLen = (FamilyIDBytes + RefreshSecretBytes) / 3 * 4
	// FamilyIDLen is the length of an encoded family id: 22 characters.
	FamilyIDLen = (FamilyIDBytes*8 + 5) / 6
)

// ErrOpen means a sealed successor could not be opened: wrong predecessor, or
// corrupted or truncated data.
var ErrOpen = errors.New("tokens: cannot open sealed refresh token")

// NewFamilyToken starts a new refresh-token family: it returns the first
// token of the family and the family id (22 base64url characters).
func NewFamilyToken() (token, familyID string) {
	var b [FamilyIDBytes + RefreshSecretBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return b64(b[:]), b64(b[:FamilyIDBytes])
}

// NewToken returns a fresh refresh token in the family familyID (as returned
// by NewFamilyToken or ParseRefresh), e.g. the successor of a rotated token.
func NewToken(familyID string) (string, error) {
	var b [FamilyIDBytes + RefreshSecretBytes]byte
	if len(familyID) != FamilyIDLen || !isBase64URL(familyID) {
		return "", errors.New("tokens: malformed refresh-token family id")
	}
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(familyID))
	if err != nil || n != FamilyIDBytes {
		return "", errors.New("tokens: malformed refresh-token family id")
	}
	_, _ = rand.Read(b[FamilyIDBytes:])
	return b64(b[:]), nil
}

// ParseRefresh checks the syntax of a refresh token (exactly RefreshTokenLen
// base64url characters) and returns its family id. It says nothing about
// whether the token was issued; look its Digest up in the store for that.
func ParseRefresh(token string) (familyID string, ok bool) {
	if len(token) != RefreshTokenLen || !isBase64URL(token) {
		return "", false
	}
	var b [FamilyIDBytes + RefreshSecretBytes]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(token))
	if err != nil || n != len(b) {
		return "", false
	}
	return b64(b[:FamilyIDBytes]), true
}

// Digest returns the unpadded base64url SHA-256 of token (43 characters).
// The store keeps only digests, never tokens.
func Digest(token string) string {
	var buf [128]byte // keeps the usual 64-byte token off the heap
	sum := sha256.Sum256(append(buf[:0], token...))
	return b64(sum[:])
}

// sealLabel domain-separates the sealing key from Digest.
const sealLabel = "moserver/successor\x00"

// sealAEAD returns AES-256-GCM keyed with SHA-256(sealLabel || predecessor).
func sealAEAD(predecessor string) (cipher.AEAD, error) {
	h := sha256.New()
	h.Write([]byte(sealLabel))
	h.Write([]byte(predecessor))
	var key [sha256.Size]byte
	block, err := aes.NewCipher(h.Sum(key[:0]))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts successor so that only the holder of predecessor can recover
// it (with Open): AES-256-GCM under SHA-256("moserver/successor\x00" ||
// predecessor), output = 12-byte random nonce || ciphertext || 16-byte tag.
func Seal(predecessor, successor string) ([]byte, error) {
	aead, err := sealAEAD(predecessor)
	if err != nil {
		return nil, fmt.Errorf("tokens: seal: %w", err)
	}
	ns := aead.NonceSize()
	out := make([]byte, ns, ns+len(successor)+aead.Overhead())
	_, _ = rand.Read(out)
	return aead.Seal(out, out[:ns], []byte(successor), nil), nil
}

// Open recovers the successor sealed by Seal for predecessor. It fails with
// ErrOpen if predecessor is not the one used to seal or the data was altered.
func Open(predecessor string, sealed []byte) (string, error) {
	aead, err := sealAEAD(predecessor)
	if err != nil {
		return "", fmt.Errorf("tokens: open: %w", err)
	}
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return "", ErrOpen
	}
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], nil)
	if err != nil {
		return "", ErrOpen
	}
	return string(pt), nil
}
