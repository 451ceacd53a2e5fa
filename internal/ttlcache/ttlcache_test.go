package ttlcache

import (
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	c := New[string, int](time.Minute, 2)
	now := time.Now()
	if _, ok := c.Get("a", now); ok {
		t.Fatal("a value in an empty cache")
	}
	c.Put("a", 1, now)
	if v, ok := c.Get("a", now.Add(59*time.Second)); !ok || v != 1 {
		t.Fatalf("a fresh value: %v, %v", v, ok)
	}
	if _, ok := c.Get("a", now.Add(time.Minute)); ok {
		t.Fatal("a value past its time")
	}
	c.Put("b", 2, now)
	c.Put("c", 3, now.Add(2*time.Minute)) // full: a and b have expired
	if _, ok := c.Get("b", now.Add(2*time.Minute)); ok || len(c.entries) != 1 {
		t.Fatalf("expired entries kept when full: %v", c.entries)
	}
	c.Put("d", 4, now.Add(2*time.Minute))
	c.Put("e", 5, now.Add(2*time.Minute)) // full of fresh ones: starts over
	if len(c.entries) > 2 {
		t.Fatalf("the cache outgrew its bound: %d entries", len(c.entries))
	}
}
