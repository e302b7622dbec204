package mockdc

import (
	"encoding/json"
	"fmt"
	"time"
)

// Faults are the misbehaviours a mock datacenter can be told to show. Rates
// are fractions of requests (0 to 1). They apply to the datacenter API
// (/v1/... and /healthz), never to /debug or /metrics, so a test can always
// switch them off again.
type Faults struct {
	// ErrorRate answers this fraction of requests 500 without acting on them.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Latency delays every request.
	Latency Duration `json:"latency,omitempty"`
	// TimeoutRate accepts this fraction of requests and never answers them.
	TimeoutRate float64 `json:"timeoutRate,omitempty"`
	// DropAfterAcceptRate starts this fraction of job submissions but closes
	// the connection instead of answering: the client cannot know it started.
	DropAfterAcceptRate float64 `json:"dropAfterAcceptRate,omitempty"`
	// JobFailureRate makes this fraction of jobs end failed.
	JobFailureRate float64 `json:"jobFailureRate,omitempty"`
	// Outage answers every request 503: the datacenter is down.
	Outage bool `json:"outage,omitempty"`
}

func (f Faults) validate() error {
	for name, rate := range map[string]float64{"errorRate": f.ErrorRate, "timeoutRate": f.TimeoutRate,
		"dropAfterAcceptRate": f.DropAfterAcceptRate, "jobFailureRate": f.JobFailureRate} {
		if rate < 0 || rate > 1 {
			return fmt.Errorf("%s must be between 0 and 1, got %v", name, rate)
		}
	}
	if f.Latency.Duration < 0 || f.Latency.Duration > 5*time.Minute {
		return fmt.Errorf("latency must be between 0 and 5m, got %s", f.Latency.Duration)
	}
	return nil
}

// Duration is a time.Duration written in JSON as a string such as "250ms".
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string such as "250ms", or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration is a string such as \"250ms\"")
		}
		d.Duration = time.Duration(n)
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = parsed
	return nil
}
