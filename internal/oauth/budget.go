package oauth

import (
	"context"
	"sync"
	"time"
)

// requestBudget is the context of every store and registry call of one
// request: they share one deadline, StoreTimeout after the request was read,
// so a stalled store costs a request at most one StoreTimeout in total,
// however many calls it makes. The context behind it is made only when a
// call first waits on it (Done), so a request that never reaches the store
// allocates no timer.
type requestBudget struct {
	parent   context.Context
	deadline time.Time

	mu     sync.Mutex // calls may wait on it from other goroutines
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*requestBudget)(nil)

// budget starts the store budget of a request.
func (s *Server) budget(parent context.Context) requestBudget {
	return requestBudget{parent: parent, deadline: time.Now().Add(s.cfg.StoreTimeout)}
}

func (b *requestBudget) real() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithDeadline(b.parent, b.deadline)
	}
	return b.ctx
}

// Deadline implements context.Context: the budget's end, or the parent's
// deadline when that comes first.
func (b *requestBudget) Deadline() (time.Time, bool) {
	if d, ok := b.parent.Deadline(); ok && d.Before(b.deadline) {
		return d, true
	}
	return b.deadline, true
}

// Done implements context.Context.
func (b *requestBudget) Done() <-chan struct{} { return b.real().Done() }

// Err implements context.Context. Once Done has been asked for, it is the
// error of the context behind Done, so it is never nil once Done is closed:
// the context package cancels the contexts made from a budget with the
// budget's Err when its Done closes, and panics on a nil one, which a
// released budget (Done closed by release) gave before its deadline.
func (b *requestBudget) Err() error {
	b.mu.Lock()
	ctx := b.ctx
	b.mu.Unlock()
	if ctx != nil {
		return ctx.Err()
	}
	if err := b.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(b.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context.
func (b *requestBudget) Value(key any) any { return b.parent.Value(key) }

// release frees the timer of the budget, if one was made.
func (b *requestBudget) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		b.cancel()
	}
}
