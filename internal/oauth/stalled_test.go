package oauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// stalledBody delivers one byte, then blocks until release is closed, as a
// client does that announces a large body and sends almost none of it.
type stalledBody struct {
	sent    bool
	stalled *sync.WaitGroup
	release <-chan struct{}
}

var errStalledReleased = errors.New("stalled body released")

func (b *stalledBody) Read(p []byte) (int, error) {
	if !b.sent {
		if len(p) == 0 {
			return 0, nil
		}
		b.sent = true
		p[0] = 'g'
		return 1, nil
	}
	b.stalled.Done()
	<-b.release
	return 0, errStalledReleased
}

func (*stalledBody) Close() error { return nil }

// stalledRequests is how many token requests TestStalledBodyMemory keeps
// waiting for their bodies at once.
const stalledRequests = 500

// A request body costs memory for what has arrived, not for what its
// Content-Length announces: requests that announce the largest body allowed
// and send one byte hold far less than that each while they wait.
func TestStalledBodyMemory(t *testing.T) {
	f := newFixture(t, nil, nil)
	// The token endpoint's own requests, and a form POST to any other URL,
	// whose body the module reads for a rest_route before PHP gets it.
	for _, path := range []string{DefaultTokenPath, "/wp-comments-post.php"} {
		perRequest := heapPerStalledRequest(t, f.srv, stalledRequests, path)
		t.Logf("%s: heap per stalled request (Content-Length %d, 1 byte sent): %d bytes", path, MaxBodyBytes, perRequest)
		if limit := int64(8 << 10); perRequest > limit {
			t.Errorf("%s: each stalled request holds %d bytes of heap, want at most %d (the announced length is %d)",
				path, perRequest, limit, MaxBodyBytes)
		}
	}
}

// heapPerStalledRequest starts n token requests through s.Handle whose
// bodies announce MaxBodyBytes and deliver one byte, waits until every one
// is blocked reading the rest, and returns the live heap they hold, per
// request. The requests are built before the first measurement, so it counts
// what the handler holds for them.
func heapPerStalledRequest(t testing.TB, s *Server, n int, path string) int64 {
	t.Helper()
	var stalled, done sync.WaitGroup
	release := make(chan struct{})
	reqs := make([]*http.Request, n)
	recs := make([]*httptest.ResponseRecorder, n)
	answered := make([]bool, n)
	for i := range reqs {
		req := httptest.NewRequest(http.MethodPost, path, nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Content-Length", strconv.Itoa(MaxBodyBytes))
		req.Body, req.ContentLength = &stalledBody{stalled: &stalled, release: release}, MaxBodyBytes
		reqs[i], recs[i] = req, httptest.NewRecorder()
	}
	before := liveHeap()
	stalled.Add(n)
	done.Add(n)
	for i := range reqs {
		go func() {
			defer done.Done()
			answered[i] = s.Handle(recs[i], reqs[i])
		}()
	}
	stalled.Wait()
	during := liveHeap()
	close(release)
	done.Wait()
	for i, rec := range recs {
		if path != DefaultTokenPath {
			if answered[i] {
				t.Fatalf("%s, request %d: answered %d; it is the next handler's", path, i, rec.Code)
			}
			continue
		}
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("request %d: status %d, want 400 once its body fails", i, rec.Code)
		}
	}
	runtime.KeepAlive(reqs)
	return (int64(during) - int64(before)) / int64(n)
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
