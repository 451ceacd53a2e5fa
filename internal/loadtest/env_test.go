package loadtest

import (
	"testing"
	"time"
)

// The assertions of the bench's and the soak's former copies.
func TestEnvDuration(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 7 * time.Second, "10": 10 * time.Second, "90": 90 * time.Second,
		"2.5": 2500 * time.Millisecond, "1m": time.Minute, "2m": 2 * time.Minute} {
		t.Setenv("LOADTEST_X", v)
		got, err := EnvDuration("LOADTEST_X", 7*time.Second)
		if err != nil || got != want {
			t.Errorf("%q: %v, %v", v, got, err)
		}
	}
	t.Setenv("LOADTEST_X", "soon")
	if _, err := EnvDuration("LOADTEST_X", 0); err == nil {
		t.Error("no error for a bad duration")
	}
}

func TestEnvIntFloat(t *testing.T) {
	t.Setenv("LOADTEST_N", "1_000_000")
	if n, err := EnvInt("LOADTEST_N", 0); err != nil || n != 1_000_000 {
		t.Errorf("EnvInt: %v %v", n, err)
	}
	t.Setenv("LOADTEST_N", "many")
	if _, err := EnvInt("LOADTEST_N", 0); err == nil {
		t.Error("EnvInt: no error for a bad integer")
	}
	t.Setenv("LOADTEST_F", "0.8")
	if f, err := EnvFloat("LOADTEST_F", 0); err != nil || f != 0.8 {
		t.Errorf("EnvFloat: %v %v", f, err)
	}
	if f, err := EnvFloat("LOADTEST_UNSET", 1.5); err != nil || f != 1.5 {
		t.Errorf("EnvFloat default: %v %v", f, err)
	}
}
