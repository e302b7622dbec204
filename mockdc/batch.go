package mockdc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"stargate.io/stargate/pkg/datacenter"
)

// SetBatchOffered turns the batch endpoints on or off at run time (see
// Options.NoBatch): off, the mock answers like a datacenter that implements
// only the core contract, as one rolled back to an older version would.
func (s *Server) SetBatchOffered(on bool) {
	s.noBatch.Store(!on)
	s.logger.Info("Batch endpoints changed", "offered", on)
}

// BatchOffered reports whether the batch endpoints are on.
func (s *Server) BatchOffered() bool { return !s.noBatch.Load() }

// capabilities is the mock's GET /v1/capabilities document.
func (s *Server) capabilities() datacenter.Capabilities {
	return datacenter.Capabilities{
		JobChanges:    &datacenter.JobChangesCapability{MaxLimit: datacenter.MaxChangesLimit, Retention: s.opts.ChangeRetention},
		MachineLookup: &datacenter.MachineLookupCapability{MaxMACs: datacenter.MaxLookupMACs},
	}
}

// Changes returns the jobs changed after cursor ("" or "0": from now), at
// most limit of them, each as it is now.
func (s *Server) Changes(cursor string, limit int) (datacenter.JobChanges, error) {
	now := s.lock()
	defer s.unlock()
	from, err := s.changes.position(cursor)
	if err != nil {
		return datacenter.JobChanges{}, err
	}
	ids, next := s.changes.since(from, limit)
	page := datacenter.JobChanges{Jobs: make([]datacenter.Job, 0, len(ids)), Cursor: s.changes.cursor(next),
		More: next < s.changes.last}
	for _, id := range ids {
		if j, ok := s.st.Jobs[id]; ok {
			page.Jobs = append(page.Jobs, s.view(j, now))
		}
	}
	s.metrics.batchItems.WithLabelValues(routeChanges).Add(float64(len(page.Jobs)))
	return page, nil
}

// LookupMachines looks machines up: every MAC asked about lands in exactly
// one list, those that are not MAC addresses in NotFound as given.
func (s *Server) LookupMachines(macs []string) datacenter.MachineLookup {
	s.lock()
	defer s.unlock()
	out := datacenter.MachineLookup{Machines: []datacenter.MachineState{}, NotFound: []string{}}
	seen := map[string]bool{}
	for _, asked := range macs {
		mac, ok := normalizeMAC(asked)
		if !ok {
			mac = asked
		}
		if seen[mac] {
			continue
		}
		seen[mac] = true
		if m, known := s.st.Machines[mac]; ok && known {
			out.Machines = append(out.Machines, *m)
		} else {
			out.NotFound = append(out.NotFound, asked)
		}
	}
	s.metrics.batchItems.WithLabelValues(routeLookup).Add(float64(len(macs)))
	return out
}

// Routes of the batch endpoints, as /metrics labels them.
const (
	routeCapabilities = "/v1/capabilities"
	routeChanges      = "/v1/jobs?changedSince"
	routeLookup       = "/v1/machines:lookup"
)

// noRoute answers as the mux does a path it does not serve: how a
// datacenter without the batch endpoints answers them.
func noRoute(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
}

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) {
	if !s.BatchOffered() {
		noRoute(w, r)
		return
	}
	writeJSON(w, http.StatusOK, s.capabilities())
}

// isChangesRequest tells the changes feed from GET /v1/jobs?idempotencyKey=.
// Without the batch endpoints, GET /v1/jobs is only the latter, as before.
func (s *Server) isChangesRequest(r *http.Request) bool {
	return s.BatchOffered() && r.URL.Query().Has("changedSince")
}

func (s *Server) handleChanges(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("idempotencyKey") {
		writeError(w, http.StatusBadRequest, "give either idempotencyKey or changedSince, not both")
		return
	}
	limit := datacenter.DefaultChangesLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit %q is not a whole number from 1 to %d", v, datacenter.MaxChangesLimit))
			return
		}
		limit = min(n, datacenter.MaxChangesLimit)
	}
	page, err := s.Changes(q.Get("changedSince"), limit)
	var gone errCursorGone
	switch {
	case errors.As(err, &gone):
		writeError(w, http.StatusGone, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, page)
	}
}

func (s *Server) handleLookup(w http.ResponseWriter, r *http.Request) {
	if !s.BatchOffered() {
		noRoute(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q is not application/json", ct))
		return
	}
	var req datacenter.MachineLookupRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", maxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "malformed lookup: "+err.Error())
		return
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "malformed lookup: trailing data after the JSON object")
		return
	}
	if len(req.MACs) > datacenter.MaxLookupMACs {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%d MACs asked about; at most %d a lookup", len(req.MACs), datacenter.MaxLookupMACs))
		return
	}
	writeJSON(w, http.StatusOK, s.LookupMachines(req.MACs))
}
