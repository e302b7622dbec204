package mockdc

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzSubmitDecoding sends arbitrary bodies to POST /v1/jobs: the mock must
// never panic and must answer junk with a 4xx, never a 5xx.
func FuzzSubmitDecoding(f *testing.F) {
	for _, seed := range []string{
		`{"operation":"repave","machine":{"mac":"aa:bb:cc:dd:ee:01"},"image":{"url":"https://x/y","version":"2.0.0"}}`,
		`{"operation":"reboot","machine":{"mac":"AA-BB-CC-DD-EE-02"}}`,
		`{"operation":"repave","machine":{"mac":"aa:bb:cc:dd:ee:01"}}`,
		`{"operation":"explode"}`, `{`, `[]`, `null`, `{"operation":1}`, `{"machine":{"mac":"zz"}}`,
		`{"operation":"power-on","machine":{"mac":"aa:bb:cc:dd:ee:01"},"extra":true}`, "\x00\xff", `{"a":` + `[[[[[[[[[[`,
	} {
		f.Add([]byte(seed), "key")
	}
	s, err := New(DefaultOptions("dc-fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/jobs", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("body %q: %d %s", body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 300 && rec.Code != http.StatusConflict && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("body %q: unexpected %d", body, rec.Code)
		}
	})
}

// FuzzBatchRequests sends arbitrary lookup bodies and feed queries: the mock
// must never panic and must answer junk with a 4xx (410 for a cursor it
// cannot serve), never a 5xx.
func FuzzBatchRequests(f *testing.F) {
	for _, seed := range []string{`{"macs":["aa:bb:cc:dd:ee:01","zz"]}`, `{"macs":null}`, `{"macs":[1]}`, `{`, `[]`, "\x00"} {
		f.Add([]byte(seed), "changedSince=&limit=10")
	}
	f.Add([]byte(`{}`), "changedSince=x-1&limit=-1")
	f.Add([]byte(`{}`), "changedSince=0&limit=99999999999999999999")
	s, err := New(DefaultOptions("dc-fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte, query string) {
		for _, req := range []*http.Request{
			httptest.NewRequest(http.MethodPost, "/v1/machines:lookup", bytes.NewReader(body)),
			httptest.NewRequest(http.MethodGet, "/v1/jobs", nil),
		} {
			if req.Method == http.MethodGet {
				req.URL.RawQuery = query
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 || (rec.Code >= 300 && rec.Code < 400) {
				t.Fatalf("%s %s?%s body %q: %d %s", req.Method, req.URL.Path, query, body, rec.Code, rec.Body.String())
			}
		}
	})
}
