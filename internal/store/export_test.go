package store

import "time"

// Hooks for the external tests of the memory store.

// SetClock replaces the wall clock the memory store expires entries by.
func SetClock(m *Memory, now func() time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock = now
}

// Sweep runs the janitor's sweep once.
func Sweep(m *Memory) { m.sweep() }

// Sizes reports how many entries the memory store holds, expired or not.
func Sizes(m *Memory) (families, tokens, jtis int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.families), len(m.tokens), len(m.jtis)
}

// ClientRevocations reports how many client revoked-before times the memory
// store holds, expired or not.
func ClientRevocations(m *Memory) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.clients)
}
