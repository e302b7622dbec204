package framework

import (
	"net/http"

	"stargate.io/stargate/mockdc"
)

// MockJobs is every job mock datacenter dc knows, in the order submitted,
// with its state and when it started and finished (or was cancelled): with
// the ledger, the oracle of what ran when.
func (c *Cluster) MockJobs(dc string) ([]mockdc.JobRecord, error) {
	var jobs []mockdc.JobRecord
	return jobs, c.mockDebug(dc, http.MethodGet, "/debug/jobs", nil, &jobs)
}
