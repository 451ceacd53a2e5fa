package oauth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// memWordPress is an in-memory WordPress database for the core's tests:
// the plugin's access-token rows, users and client keys. err, when set, is
// what every call returns, as a database that cannot answer.
type memWordPress struct {
	mu          sync.Mutex
	access      map[string]*AccessToken
	users       map[int64]*User
	keys        map[string]*IDTokenKey
	err         error
	userReads   int
	keyReads    int
	accessReads int
}

// accessLookups is how many times the access-token table was read.
func (f *memWordPress) accessLookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accessReads
}

var errWordPressDown = errors.New("wordpress: test outage")

func newMemWordPress() *memWordPress {
	return &memWordPress{access: map[string]*AccessToken{}, users: map[int64]*User{}, keys: map[string]*IDTokenKey{}}
}

func (f *memWordPress) down(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = nil
	if down {
		f.err = errWordPressDown
	}
}

func (f *memWordPress) LookupPluginRefresh(context.Context, string) (*PluginRefresh, error) {
	return nil, f.err
}

func (f *memWordPress) TakePluginRefresh(context.Context, *PluginRefresh) (bool, error) {
	return false, f.err
}

func (f *memWordPress) InsertAccessToken(_ context.Context, token, clientID string, userID int64, expires time.Time, scope string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.access[token] = &AccessToken{ClientID: clientID, UserID: userID, Expires: expires.Truncate(time.Second), Scope: scope}
	return nil
}

func (f *memWordPress) IDToken(context.Context, string, int64, time.Time, time.Time, string) (string, error) {
	return "", errors.New("fake: no id_tokens")
}

func (f *memWordPress) LookupAuthCode(context.Context, string) (*AuthCode, error) { return nil, f.err }

func (f *memWordPress) TakeAuthCode(context.Context, string) (bool, error) { return false, f.err }

func (f *memWordPress) DeleteAccessToken(_ context.Context, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.access, token)
	return nil
}

func (f *memWordPress) LookupAccessToken(_ context.Context, token string) (*AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accessReads++
	if f.err != nil {
		return nil, f.err
	}
	if row, ok := f.access[token]; ok {
		c := *row
		return &c, nil
	}
	return nil, nil
}

func (f *memWordPress) User(_ context.Context, id int64) (*User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.userReads++
	if u, ok := f.users[id]; ok {
		c := *u
		return &c, nil
	}
	return nil, nil
}

func (f *memWordPress) IDTokenKey(_ context.Context, clientID string) (*IDTokenKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	f.keyReads++
	return f.keys[clientID], nil
}

func (f *memWordPress) reads() (users, keys int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.userReads, f.keyReads
}
