package wordpress

import (
	"testing"
	"time"
)

func TestTTLCache(t *testing.T) {
	c := newTTLCache[string, int](time.Minute, 2)
	now := time.Now()
	if _, ok := c.get("a", now); ok {
		t.Fatal("a value in an empty cache")
	}
	c.put("a", 1, now)
	if v, ok := c.get("a", now.Add(59*time.Second)); !ok || v != 1 {
		t.Fatalf("a fresh value: %v, %v", v, ok)
	}
	if _, ok := c.get("a", now.Add(time.Minute)); ok {
		t.Fatal("a value past its time")
	}
	c.put("b", 2, now)
	c.put("c", 3, now.Add(2*time.Minute)) // full: a and b have expired
	if _, ok := c.get("b", now.Add(2*time.Minute)); ok || len(c.entries) != 1 {
		t.Fatalf("expired entries kept when full: %v", c.entries)
	}
	c.put("d", 4, now.Add(2*time.Minute))
	c.put("e", 5, now.Add(2*time.Minute)) // full of fresh ones: starts over
	if len(c.entries) > 2 {
		t.Fatalf("the cache outgrew its bound: %d entries", len(c.entries))
	}
}
