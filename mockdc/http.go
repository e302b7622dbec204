package mockdc

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"stargate.io/stargate/pkg/datacenter"
)

// maxBodyBytes bounds request bodies: a job request is a few KiB even with user data.
const maxBodyBytes = 1 << 20

// maxHang bounds how long an injected timeout holds a request, so no test
// can leave a goroutine behind for ever.
const maxHang = 5 * time.Minute

// Handler serves the datacenter API, /debug and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(route string, h http.HandlerFunc) http.Handler {
		return s.observe(route, s.authenticate(s.injectFaults(route, h)))
	}
	api := func(pattern, r string, h http.HandlerFunc) { mux.Handle(pattern, route(r, h)) }
	api("POST /v1/jobs", "/v1/jobs", s.handleSubmit)
	findJob, changes := route("/v1/jobs", s.handleFindJob), route(routeChanges, s.handleChanges)
	mux.Handle("GET /v1/jobs", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.isChangesRequest(r) {
			changes.ServeHTTP(w, r)
			return
		}
		findJob.ServeHTTP(w, r)
	}))
	api("GET /v1/jobs/{id}", "/v1/jobs/{id}", s.handleGetJob)
	api("POST /v1/jobs/{id}/cancel", "/v1/jobs/{id}/cancel", s.handleCancel)
	api("GET /v1/machines/{mac}", "/v1/machines/{mac}", s.handleMachine)
	api("POST /v1/machines:lookup", routeLookup, s.handleLookup)
	api("GET /v1/capabilities", routeCapabilities, s.handleCapabilities)
	mux.Handle("GET /healthz", s.observe("/healthz", s.injectFaults("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "datacenter": s.opts.Name})
	})))
	debug := func(pattern, route string, h http.HandlerFunc) {
		mux.Handle(pattern, s.observe(route, s.authenticate(h)))
	}
	debug("GET /debug/ledger", "/debug/ledger", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Ledger()) })
	debug("GET /debug/jobs", "/debug/jobs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Jobs()) })
	debug("GET /debug/faults", "/debug/faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Faults()) })
	debug("POST /debug/faults", "/debug/faults", s.handleSetFaults)
	mux.Handle("GET /metrics", s.authenticate(s.metrics.handler().ServeHTTP))
	mux.Handle("/", s.observe("other", http.HandlerFunc(noRoute)))
	return mux
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(datacenter.IdempotencyKeyHeader)
	if key == "" || len(key) > 256 {
		writeError(w, http.StatusBadRequest, "an Idempotency-Key header of 1 to 256 characters is required")
		return
	}
	req, status, err := decodeJobRequest(w, r)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	var notAfter time.Time
	if v := r.Header.Get(datacenter.NotAfterHeader); v != "" {
		if notAfter, err = time.Parse(time.RFC3339Nano, v); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("the %s header must be an RFC 3339 time: %v", datacenter.NotAfterHeader, err))
			return
		}
	}
	res, err := s.submit(key, req, notAfter)
	var reused errKeyReused
	var full errFull
	var late errTooLate
	switch {
	case errors.As(err, &reused):
		writeError(w, http.StatusConflict, err.Error())
		return
	case errors.As(err, &late):
		writeError(w, http.StatusPreconditionFailed, err.Error())
		return
	case errors.As(err, &full):
		w.Header().Set("Retry-After", strconv.Itoa(int((full.retryAfter+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, err.Error())
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if res.lose {
		s.logger.Info("Losing the answer to an accepted job (injected fault)", "job", res.job.ID, "hold", res.hold)
		if res.hold > 0 {
			select {
			case <-r.Context().Done():
			case <-time.After(res.hold):
			}
		}
		dropConnection(w)
		return
	}
	if !res.replayed && s.roll(s.Faults().DropAfterAcceptRate) {
		s.logger.Info("Dropping the answer to an accepted job (injected fault)", "job", res.job.ID)
		dropConnection(w)
		return
	}
	code := http.StatusAccepted
	if res.replayed {
		code = http.StatusOK
	}
	writeJSON(w, code, res.job)
}

// decodeJobRequest reads and checks a job request, normalising the MAC.
// Junk gets a 4xx, never a panic or a 5xx.
func decodeJobRequest(w http.ResponseWriter, r *http.Request) (datacenter.JobRequest, int, error) {
	var req datacenter.JobRequest
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return req, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q is not application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return req, http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", maxBodyBytes)
		}
		return req, http.StatusBadRequest, fmt.Errorf("malformed job request: %v", err)
	}
	if dec.More() {
		return req, http.StatusBadRequest, errors.New("malformed job request: trailing data after the JSON object")
	}
	if !req.Operation.Valid() {
		return req, http.StatusBadRequest, fmt.Errorf("operation %q is not one of repave, reboot, power-off, power-on", req.Operation)
	}
	mac, ok := normalizeMAC(req.Machine.MAC)
	if !ok {
		return req, http.StatusBadRequest, fmt.Errorf("machine.mac %q is not a MAC address", req.Machine.MAC)
	}
	req.Machine.MAC = mac
	if req.Operation == datacenter.OperationRepave && (req.Image == nil || req.Image.URL == "" || req.Image.Version == "") {
		return req, http.StatusBadRequest, errors.New("a repave needs image.url and image.version")
	}
	return req, 0, nil
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request) {
	if job, ok := s.getJob(r.PathValue("id")); ok {
		writeJSON(w, http.StatusOK, job)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("job %q not found", r.PathValue("id")))
}

func (s *Server) handleFindJob(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("idempotencyKey")
	if key == "" {
		writeError(w, http.StatusBadRequest, "the idempotencyKey query parameter is required")
		return
	}
	if job, ok := s.FindJob(key); ok {
		writeJSON(w, http.StatusOK, job)
		return
	}
	writeError(w, http.StatusNotFound, "no job was submitted with that idempotency key")
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	if job, ok := s.cancel(r.PathValue("id")); ok {
		writeJSON(w, http.StatusOK, job)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("job %q not found", r.PathValue("id")))
}

func (s *Server) handleMachine(w http.ResponseWriter, r *http.Request) {
	mac, ok := normalizeMAC(r.PathValue("mac"))
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a MAC address", r.PathValue("mac")))
		return
	}
	if m, ok := s.machine(mac); ok {
		writeJSON(w, http.StatusOK, m)
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("machine %s is not known to %s", mac, s.opts.Name))
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeError(w, http.StatusBadRequest, "malformed faults: "+err.Error())
		return
	}
	if err := s.SetFaults(f); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// authenticate requires the bearer token when one is configured. The token is
// compared in constant time and never logged.
func (s *Server) authenticate(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.tokens != nil {
			want, err := s.tokens.Get()
			got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if err != nil || !found || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.opts.Name+`"`)
				writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
				return
			}
		}
		next(w, r)
	}
}

// injectFaults applies the active faults before the request is handled.
func (s *Server) injectFaults(route string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f := s.Faults()
		if f.Outage {
			writeError(w, http.StatusServiceUnavailable, s.opts.Name+" is down (injected outage)")
			return
		}
		if f.Latency.Duration > 0 {
			select {
			case <-time.After(f.Latency.Duration):
			case <-r.Context().Done():
				return
			}
		}
		if s.roll(f.TimeoutRate) {
			// Read the body first: net/http notices a client that gave up
			// (and cancels r.Context) only once the body is consumed;
			// otherwise the hang would outlive the client by maxHang.
			_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBodyBytes))
			select { // accepted, never answered: the client's timeout must fire
			case <-r.Context().Done():
			case <-time.After(maxHang):
			}
			return
		}
		if s.roll(f.ErrorRate) {
			writeError(w, http.StatusInternalServerError, "internal error (injected)")
			return
		}
		next(w, r)
	}
}

// observe logs and counts every request. Headers are not logged: they carry the token.
func (s *Server) observe(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		s.logger.V(2).Info("Request", "method", r.Method, "path", r.URL.Path, "code", rec.code, "duration", time.Since(start))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection to drop it.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// dropConnection closes the connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler) // HTTP/2: abort the stream instead
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, datacenter.ErrorBody{Code: code, Message: msg})
}
