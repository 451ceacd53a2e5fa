package oauth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A context made from a request's budget (as the database and store clients
// make theirs) ends with it: when the budget is released, or its deadline
// passes, the child is done with an error, the same as the budget's own.
func TestBudgetChildren(t *testing.T) {
	s := &Server{cfg: Config{StoreTimeout: time.Hour}}

	b := s.budget(context.Background())
	child, cancel := context.WithTimeout(&b, time.Hour)
	defer cancel()
	b.release()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a child of a released budget is not done")
	}
	if !errors.Is(child.Err(), context.Canceled) || !errors.Is(b.Err(), context.Canceled) {
		t.Fatalf("after release: child %v, budget %v; want both canceled", child.Err(), b.Err())
	}

	s.cfg.StoreTimeout = 20 * time.Millisecond
	b = s.budget(context.Background())
	defer b.release()
	child, cancel = context.WithCancel(&b)
	defer cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a child of a budget past its deadline is not done")
	}
	if !errors.Is(child.Err(), context.DeadlineExceeded) || !errors.Is(b.Err(), context.DeadlineExceeded) {
		t.Fatalf("past the deadline: child %v, budget %v; want both past their deadline", child.Err(), b.Err())
	}
}
